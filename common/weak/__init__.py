"""Weak supervision: weak labels made from masks (:mod:`common.weak.labels`), boxes from saliency maps
(:mod:`common.weak.boxes`); pseudo masks grown from weak labels and their post-processing go here too."""
