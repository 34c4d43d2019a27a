"""Domain knowledge a clinician would state, each prior a small function (training loss or post-processing).

- :mod:`common.priors.topology`: the LV cavity is one connected component, filled, inside the myocardium ring.
- :mod:`common.priors.size`: the LV's size lies in a known range (the size penalty of ``common.losses.size``).
- :mod:`common.priors.shape`: compactness (soft isoperimetric ratio, a loss) and convexity (convex hull).
- :mod:`common.priors.fundus`: the optic cup lies inside the disc; the disc centre from the brightest spot.
- :mod:`common.priors.polar`: the polar transform around the disc centre (Fu et al., M-Net) and its inverse.
- :mod:`common.priors.windowing`: CT / radiograph intensities as several windowed input channels.

Import from the modules (``from common.priors.topology import lv_prior``).
"""
