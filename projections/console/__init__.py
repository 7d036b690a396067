"""The Choreo console: server-rendered pages served by the API process under ``/console``.

Pages are Jinja2 templates rendered from the same :class:`~projections.queries.Queries` the
API answers with; a small script of Choreo's own (``assets/console.js``) refreshes the live
parts of a page by fetching their HTML again and sends the operator's actions to the JSON API.
Nothing is loaded from elsewhere: the stylesheet, the script and the charts (inline SVG drawn
by the templates) are served from here. Paths carry the saga type
(``/console/sagas/order``), so that other saga types can join the list later.
"""
