"""Writes the example models' held-out outputs as .npy files beside this script.

Every model is a real scikit-learn model trained on a dataset that ships inside
scikit-learn (nothing is downloaded), with fixed random states, so running the script
again writes the same files. Run with the system Python:

    /usr/bin/python3 examples/make_examples.py
"""

import pathlib

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = pathlib.Path(__file__).resolve().parent
SEED = 0


def split(x, y):
    return train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)


def save(name, logits, labels):
    np.save(HERE / f"{name}_logits.npy", np.ascontiguousarray(logits))
    np.save(HERE / f"{name}_labels.npy", labels.astype(np.int64))
    accuracy = (
        np.mean((logits > 0) == labels) if logits.ndim == 1
        else np.mean(logits.argmax(axis=1) == labels)
    )
    print(f"{name}: logits {logits.shape} {logits.dtype}, accuracy {accuracy:.4f}")


def digits_logistic_regression():
    """Multinomial logistic regression on 8x8 digits: the softmax logits."""
    x_train, x_test, y_train, y_test = split(*load_digits(return_X_y=True))
    # Weak regularisation makes the model overconfident, the usual case in practice.
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=10.0, max_iter=5000, random_state=SEED))
    model.fit(x_train, y_train)
    save("digits", model.decision_function(x_test).astype(np.float32), y_test)


def breast_cancer_logistic_regression():
    """Binary logistic regression on the Wisconsin breast-cancer data: one logit a row."""
    x_train, x_test, y_train, y_test = split(*load_breast_cancer(return_X_y=True))
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=10.0, max_iter=5000, random_state=SEED))
    model.fit(x_train, y_train)
    save("breast_cancer", model.decision_function(x_test).astype(np.float32), y_test)


def digits_gaussian_nb():
    """Gaussian naive Bayes on digits: its joint log-likelihoods as logits.

    Pixels that are constant within a class get a tiny variance (var_smoothing), so the
    log-likelihoods span ~1e9 and the best temperature is ~1e8: the case a temperature
    search over a small fixed range gets wrong.
    """
    x_train, x_test, y_train, y_test = split(*load_digits(return_X_y=True))
    model = GaussianNB(var_smoothing=2e-10).fit(x_train, y_train)
    save("digits_gaussian_nb", model.predict_joint_log_proba(x_test), y_test)


if __name__ == "__main__":
    digits_logistic_regression()
    breast_cancer_logistic_regression()
    digits_gaussian_nb()
