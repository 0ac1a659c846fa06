"""Meta-learning over attack tasks: fast weights, task sampling, MAML/FOMAML and Reptile."""
