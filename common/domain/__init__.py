"""Unsupervised domain adaptation: align a labelled source domain with an unlabelled target (two cameras, two sites).

One small module per idea:

| module | idea |
|---|---|
| `grl` | gradient reversal layer (Ganin & Lempitsky 2015): identity forward, -lambda x gradient backward |
| `discriminators` | a fully convolutional patch discriminator (output space) and a domain classifier (features) |
| `output_space` | output-space adversarial losses on softmax or entropy maps (AdaptSegNet, pOSAL, BEAL / ADVENT) |
| `dann` | feature-level domain-adversarial loss through gradient reversal (DANN, Ganin et al. 2016) |
| `histogram` | histogram matching of a source image to a target image, per channel |
| `adabn` | AdaBN: batch-norm statistics recomputed on the target (Li et al. 2017) |
| `fda` | Fourier domain adaptation: the target's low-frequency amplitude on the source (Yang & Soatto 2020) |

Import from the modules (``from common.domain.grl import grad_reverse``).
"""
