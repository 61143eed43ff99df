"""ecgtransfer: synthetic-to-real transfer learning on electrocardiograms.

Data flows one way: sources (PTB-XL, WFDB folders, DeepFake ECGs) -> signal store ->
interval labels -> pretrained regressors -> fine-tuned classifier, with MLflow watching.
Importing the package does no work; heavy dependencies load with the stage that needs them.
"""

__version__ = "0.9.1"

__all__ = ["__version__"]
