"""Validates an OpenAPI document with openapi-spec-validator (a maintained validator of OpenAPI
3.0/3.1): python openapi_check.py URL. Prints one JSON line: {"valid": bool, "version": ...,
"errors": [...]}. Run with the venv scripts/install-tools makes (tests/interop/requirements.txt).
"""

import json
import sys
import urllib.request

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError


def main() -> None:
    with urllib.request.urlopen(sys.argv[1]) as response:  # noqa: S310 (a loopback test URL)
        document = json.load(response)
    errors = []
    try:
        validate(document)
    except OpenAPIValidationError as error:
        errors.append(str(error).splitlines()[0])
    print(json.dumps({"valid": not errors, "version": document.get("openapi"), "errors": errors}))


if __name__ == "__main__":
    main()
