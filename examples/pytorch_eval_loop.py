"""A PyTorch evaluation loop that asks a calibd server how well calibrated the model is.

A small MLP is trained for a few epochs on scikit-learn's 8x8 digits (on the CPU, in
about a second); the evaluation loop then collects the held-out logits and labels as
tensors and sends them to calib in three lines. Run, with a server listening:

    build/calibd --listen 127.0.0.1:50051 &
    PYTHONPATH=build/python /usr/bin/python3 examples/pytorch_eval_loop.py \
        --server 127.0.0.1:50051
"""

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import calib_client


def digits_loaders(batch_size):
    images, labels = load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        images / 16.0, labels, test_size=0.3, stratify=labels, random_state=0)

    def loader(x, y, shuffle):
        dataset = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32),
                                                 torch.tensor(y, dtype=torch.int64))
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)

    return loader(train_x, train_y, True), loader(test_x, test_y, False)


def train(model, loader, epochs):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="calibd address, host:port")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader, test_loader = digits_loaders(batch_size=64)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    train(model, train_loader, args.epochs)

    model.eval()
    with torch.no_grad():
        outputs = [(model(x), y) for x, y in test_loader]
    logits = torch.cat([o for o, _ in outputs])
    labels = torch.cat([y for _, y in outputs])
    report = calib_client.evaluate(logits, labels, server=args.server, top_k=(1, 3),
                                   fit_temperature=True)

    metrics = report.metrics
    print(f"{metrics.num_samples} held-out digits: accuracy {metrics.accuracy:.4f}, "
          f"ECE {metrics.ece:.4f}, NLL {metrics.nll:.4f}")
    scaled = report.temperature_scaling
    print(f"temperature {scaled.temperature:.4f}: ECE {scaled.calibrated.ece:.4f}, "
          f"NLL {scaled.calibrated.nll:.4f}")


if __name__ == "__main__":
    main()
