"""What a model's answer about a whole study rests on, shared by training (which fits and records it) and
inference (which applies it): the study rule, the statistics of the training slices the scope gate and the
intensity warnings compare inputs with, and `StudySettings`, the three together as a checkpoint stores them.
Below models and checkpoints, above preprocessing; no torch."""
