"""The recommenders, one module each; :mod:`engine.registry` imports and names them.

- :mod:`engine.models.pop`: most-popular items (closed form);
- :mod:`engine.models.itemknn`: item-item cosine neighbourhoods (closed form);
- :mod:`engine.models.ease`: EASE, Steck 2019 (closed form);
- :mod:`engine.models.fism`: FISM, Kabbur et al. 2013 (history-computed user factor), BPR loss;
- :mod:`engine.models.vae`: Mult-VAE and Mult-DAE, Liang et al. 2018;
- :mod:`engine.models.fism_neumf`: NeuMF's GMF + MLP scorer (He et al. 2017) over FISM users;
- :mod:`engine.models.bpr`, :mod:`engine.models.ials`, :mod:`engine.models.lightgcn`: the
  classic BPR-MF, iALS and LightGCN, users folded in from the history;
- :mod:`engine.models.negatives`: uniform negative sampling outside the history;
- :mod:`engine.models.diffrec`: DiffRec, Wang et al. 2023.

Every model maps histories ``x`` [batch, n_items] to scores [batch, n_items] (see
:mod:`engine.contract`) and keeps all its state in parameters and buffers, so a run is saved as
its hparams plus a safetensors state dict.
"""
