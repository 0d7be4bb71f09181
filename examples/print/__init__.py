"""Basic Grayscale Print Management over dul (PS3.4 Annex H): a print SCU and a virtual printer.

* :mod:`examples.print.printscu` prints DICOM images (or test patterns) on a DICOM printer,
  the way DCMTK's print client does: N-GET printer status, N-CREATE film session and film box,
  N-SET each image box, N-ACTION print, N-DELETE.
* :mod:`examples.print.printscp` is a virtual printer: a Print SCP that writes each film it is
  asked to print as a PNG, laid out as the film box asked.

Both run on the blocking-sockets driver (:mod:`examples.sockets.driver`) and need the ``print``
extra (pydicom, numpy, Pillow). See ``docs/print.md``.
"""
