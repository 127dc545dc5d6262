"""Federated training (FedAvg / FedAdam on Flower's strategies) with client-level differential privacy.

Data stays with its client: each round, the sampled clients train the global model locally on their own rows and
send back only a model update. With ``federated.dp`` every client's update is clipped to L2 norm ``clip_norm``,
clients join a round by Poisson sampling with rate ``q`` (a secret draw), and Gaussian noise ``σ·clip_norm`` is
added once per round to the sum of the clipped updates (DP-FedAvg, McMahan, Ramage, Talwar & Zhang, ICLR 2018).
The guarantee is client-level: adding or removing one client's whole data; ε is accounted with dp-accounting over
the rounds (Poisson-subsampled Gaussian, rate q).

Clients run in-process by default (:mod:`~tfresp.federated.train`); :mod:`~tfresp.federated.app` is the Flower App
that runs the same server code with the clients on Flower SuperNodes, and :mod:`~tfresp.federated.deploy` starts a
local SuperLink + SuperNodes for it. Every round is checkpointed (:mod:`~tfresp.federated.checkpoint`, ``--resume``).
"""
