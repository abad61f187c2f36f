"""Reading what users bring: the sources' own file formats, the eval sets, and the facts about each.

``readers`` turns files into validated records with errors that name the file and line;
``native`` knows each training source's raw format; ``sources`` loads the training sources (Hub
ids or files) and ``evalsets`` the decontamination and scoring sets, both on ``readers``;
``registry`` is the one record per source that schema, loaders, cards and figures read.
"""
