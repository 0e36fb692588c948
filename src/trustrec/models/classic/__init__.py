"""Classic recommenders: MostPopular, ItemKNN, EASE, BPR-MF, MF (naive / IPS / DR), SASRec."""

from trustrec.models.classic._bpr import BPRMF, BPRConfig
from trustrec.models.classic._ease import EASE, EASEConfig
from trustrec.models.classic._itemknn import ItemKNN, ItemKNNConfig
from trustrec.models.classic._mf import MF, MFConfig
from trustrec.models.classic._popular import MostPopular, MostPopularConfig
from trustrec.models.classic._sasrec import SASRec, SASRecConfig

__all__ = [
    "BPRMF",
    "EASE",
    "MF",
    "BPRConfig",
    "EASEConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "MFConfig",
    "MostPopular",
    "MostPopularConfig",
    "SASRec",
    "SASRecConfig",
]
