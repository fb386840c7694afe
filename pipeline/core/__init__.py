"""The lowest layer: helpers that training, evaluation, the jobs, io and the runtime share, importing nothing else
of the package.

    metrics.py      PSNR (the one formula), SSIM, MS-SSIM, SCC of 8-bit images
    distortions.py  filters, noise, resampling, 8-bit rounding, real JPEG / WebP / resize, shifts
    photos.py       photos decoded, split into training and held-out, cropped and paired as the model sees them
    files.py        atomic writes: a file appears under its name whole or not at all
    versions.py     the installed versions of the libraries a result depends on
"""
