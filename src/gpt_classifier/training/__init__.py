"""Fine-tuning: the book's loss and accuracy functions, the loop, the frozen-prefix cache."""

from .loop import train_classifier, train_classifier_simple
from .losses import calc_accuracy_loader, calc_loss_batch, calc_loss_loader, evaluate_model
from .settings import TrainSettings
