"""One module per update rule: equations, hyperparameters, kernel, class."""
