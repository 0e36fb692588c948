"""Classic recommenders: MostPopular, ItemKNN, EASE, BPR-MF, SASRec."""

from trustrec.models.classic._bpr import BPRMF, BPRConfig
from trustrec.models.classic._ease import EASE, EASEConfig
from trustrec.models.classic._itemknn import ItemKNN, ItemKNNConfig
from trustrec.models.classic._popular import MostPopular, MostPopularConfig
from trustrec.models.classic._sasrec import SASRec, SASRecConfig

__all__ = ["MostPopular", "MostPopularConfig", "ItemKNN", "ItemKNNConfig", "EASE", "EASEConfig",
           "BPRMF", "BPRConfig", "SASRec", "SASRecConfig"]
