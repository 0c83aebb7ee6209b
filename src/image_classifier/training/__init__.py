"""Training: the recipe (:class:`~image_classifier.training.recipe.TrainingRun`) and the parts it is built from."""
