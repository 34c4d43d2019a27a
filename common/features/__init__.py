"""Hand-crafted image features (scikit-image) and the shallow classifiers that read them (scikit-learn).

One module per family, each a function ``(H, W) float image in [0, 1] -> 1-D float64 vector``:

    hog         histograms of oriented gradients (Dalal & Triggs 2005)
    lbp         uniform local-binary-pattern histograms (Ojala et al. 2002)
    glcm        grey-level co-occurrence (Haralick et al. 1973) properties
    histogram   the intensity histogram
    firstorder  first-order radiomics-style statistics (as PyRadiomics' "firstorder" class)
    bank        the registry ``FEATURES`` and ``feature_matrix(images, names)`` -> (N, D)
    pipeline    SVM / random forest in a scikit-learn Pipeline, hyper-parameters by CV on the training set only

    from common.features.bank import feature_matrix
    X = feature_matrix(images, ("hog", "lbp", "glcm"))      # images (N, H, W) -> (N, D)
"""
