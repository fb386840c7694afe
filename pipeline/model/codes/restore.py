"""The restore stage: what reveal does to a stego before its network, outside the exported graph.

Registration (``register.py``: a shift, crop or mirror moved back from the thumbnail code's base pilot), then the
blind deblur (``deblur.py``: a 3x3 blur read from the code's pilots and undone). Both read the thumbnail code and
have no weights of their own; the compiled engines run this stage in torch before their reveal graph.
"""

from __future__ import annotations

import torch

from pipeline.model.codes.deblur import Deblur
from pipeline.model.codes.register import Alignment, Registration
from pipeline.model.codes.thumbnail import CodeLayout, ThumbnailCode


class Restoration:
    """stego (B, C, N, N) -> the stego registered (``register``) and deblurred (``deblur``).

    ``with_residual``: the model carries the residual code (the deblur measures the pilots without its subspace).
    """

    def __init__(
        self, thumbnail: ThumbnailCode, layout: CodeLayout, register: bool, deblur: bool, with_residual: bool
    ) -> None:
        self.thumbnail, self.layout = thumbnail, layout
        self.registers, self.deblurs, self.with_residual = register, deblur, with_residual
        self._deblur: Deblur | None = None

    @property
    def deblur(self) -> Deblur:
        """The deblur, made on first use (it calibrates on the thumbnail code's weights)."""
        if self._deblur is None:
            t = self.thumbnail
            self._deblur = Deblur(t.writer, t.reader, self.layout, self.with_residual)
        return self._deblur

    def refresh(self) -> None:
        """Forget what the deblur measured from the weights (call after they changed)."""
        self._deblur = None

    def search(self, stego: torch.Tensor) -> Alignment:
        """Registration's search: per image, the detection score, the mirror and the translation found."""
        return Registration(self.thumbnail.reader).search(stego)

    def __call__(self, stego: torch.Tensor, aligned: bool = False, alignment: Alignment | None = None) -> torch.Tensor:
        """``aligned``: the stego sits where it was embedded, so registration is skipped (and the deblur does not
        look at the mirror); ``alignment``: registration's result for these stegos when the caller has it already.
        Registration's result decides the orientation, so the deblur does not look at the mirror again."""
        oriented = False
        if self.registers and not aligned:
            reg = Registration(self.thumbnail.reader)
            stego = reg.apply(stego, alignment if alignment is not None else reg.search(stego))
            oriented = True
        if not self.deblurs:
            return stego
        return self.deblur(stego, oriented or aligned)
