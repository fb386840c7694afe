"""The paper's parts of SRIS-Net: LPFDD (``lpfdd``), GLEM (``glem``), DMSubNet with MSIB and SFM (``dmsubnet``), the
dual-task discriminator and its score map (``discriminator``), and the embed/reveal net built from them (``net``,
with its folded inference graph in ``inference``)."""
