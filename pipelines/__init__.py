"""The domain: models, precision lowering, backends, HDF5 dumps, metrics, and the stages built from them."""
