from rest_framework.renderers import JSONRenderer


class ProblemJSONRenderer(JSONRenderer):
    """Lets a client ask for `application/problem+json` explicitly."""

    media_type = "application/problem+json"
