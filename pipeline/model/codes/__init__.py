"""Our own analytic parts of the model, beside the paper's: the thumbnail code (``thumbnail``: the secret's block
means in block-DCT coefficients, with pilots), the residual code (``residual``: what reveal misses, on a lossless
channel), the blind deblur before reveal (``deblur``), and the mirror decision (``mirror``)."""
