"""One router per resource: events, claims, clusters, operations (bulk revive, correlate), health and
timeline, metrics. Each endpoint validates the shape of the request (pydantic), then calls one ``Ledger``
method with the token's name as the actor; the Ledger checks the meaning and writes."""
