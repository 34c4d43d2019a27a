"""Classic unsupervised segmentation (scikit-image): no training labels, only an intensity model and a shape prior.

A package of its own rather than part of ``common.features``: features turn an image into a vector for a classifier,
these turn an image into a mask; and unlike ``common.weak`` (which grows masks from weak labels) nothing here reads
a label of any kind. Each method splits the image into bright foreground and background; ``select`` then keeps the
one connected component that the prior names (the compact blob nearest the centre, the brightest compact blob).

    threshold   Otsu's threshold (Otsu 1979)
    watershed   marker-controlled watershed on the gradient (Beucher & Meyer 1993), markers from multi-Otsu
    contours    Chan-Vese active contours without edges (Chan & Vese 2001) and its morphological version
                (Márquez-Neila et al. 2014)
    select      the component a prior names, holes filled
    registry    ``SEGMENTERS`` and ``segment(image, method, prior)``

    from common.classic.registry import segment
    mask = segment(image, "chan-vese", prior="central")          # (H, W) bool
"""
