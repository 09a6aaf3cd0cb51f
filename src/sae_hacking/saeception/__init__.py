"""SAE-ception: SAE features of a classifier's hidden layer as a training signal, cycle by cycle.

Cycle 0 trains a classifier. Each cycle n >= 1 freezes cycle n-1's classifier, takes the top-k SAE
trained on its hidden activations, builds sharpened targets from the SAE's codes and retrains with
``CE + lambda * (1 - cos(h, t))``; an SAE is then trained on the new classifier to score its codes.
``run.run(config)`` is the whole tool.
"""
