"""The methods compared: their families and display labels."""

DUAL_AVERAGING = ("ramda", "rmda")
PROXIMAL = ("prox_sgd", "prox_ssi", "proxgen")
LABELS = {"ramda": "RAMDA", "rmda": "RMDA", "proxgen": "ProxGen",
          "prox_ssi": "ProxSSI", "prox_sgd": "ProxSGD", "adam": "Adam",
          "madgrad": "MADGRAD", "adamw": "AdamW", "sgd": "SGD"}
