"""Shared library of the iNaturalist-12K lab: data, models, training, tracking, visualisation."""
