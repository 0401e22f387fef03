"""The human interpretability study: build a rating study from built SFT arms, serve it to participants
(FastAPI + Jinja2, SQLAlchemy storage), export the ratings and analyse them.

Modules: ``config`` (the study config, defaults in ``default.yaml``), ``build`` (sample items into a study
folder), ``store`` (database tables and the participant flow's transactions), ``app`` (the web app),
``export`` (responses, participants with exclusion flags, codebook), ``analyze`` (statistics and plots),
``power`` (sample size), ``report`` (the "Human ratings" report section). The web and statistics parts
need the ``study`` extra and are imported lazily.
"""
