"""Saga definitions: the API (:mod:`sagas.definition`) and the sagas Choreo ships.

A saga's shape lives in one definition module (:mod:`sagas.order`); the coordinator and the
read models interpret definitions and know no saga by name.
"""
