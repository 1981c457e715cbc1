"""lica's Hydra configs (``train.yaml`` and its groups), shipped inside the package so
that ``lica-train`` finds them however lica is installed (``pkg://lica.conf``)."""
