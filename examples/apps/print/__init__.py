"""Basic Grayscale Print Management over dul (PS3.4 Annex H), written once for every driver.

* :mod:`~examples.apps.print.scu` prints DICOM images (or test patterns) on a DICOM printer,
  the way DCMTK's print client does: N-GET printer status, N-CREATE film session and film box,
  N-SET each image box, N-ACTION print, N-DELETE (``python -m examples.printscu``).
* :mod:`~examples.apps.print.scp` is a virtual printer: a Print SCP that writes each film it is
  asked to print as a PNG, laid out as the film box asked (``python -m examples.printscp``).

:mod:`~examples.apps.print.common` holds what both share, :mod:`~examples.apps.print.film` the
layout and drawing of films. They need the ``print`` extra (pydicom, numpy, Pillow). See
``docs/print.md``.
"""
