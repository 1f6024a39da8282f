"""The Python client from RAG Modulo's API authentication page (shared/seeds/000_*.txt), unchanged
except that the base URL and the CA bundle come from the command line, and the user is registered
first (the page documents POST /api/auth/register). Prints one JSON line for the Rust test."""
import json
import sys

import requests

BASE, CA = sys.argv[1], sys.argv[2]

# Register (documented request and response)
register_response = requests.post(
    f"{BASE}/api/auth/register",
    json={"username": "user@example.com", "password": "secure_password", "email": "user@example.com"},
    verify=CA,
)
assert register_response.status_code == 201, register_response.text
registered = register_response.json()

# Obtain token
login_response = requests.post(
    f"{BASE}/api/auth/login",
    json={"username": "user@example.com", "password": "secure_password"},
    verify=CA,
)
token = login_response.json()["access_token"]

# Use token for authenticated requests
headers = {"Authorization": f"Bearer {token}"}
response = requests.post(
    f"{BASE}/api/search",
    headers=headers,
    json={
        "question": "What is machine learning?",
        "collection_id": "123e4567-e89b-12d3-a456-426614174000",
        "user_id": "123e4567-e89b-12d3-a456-426614174000",
    },
    verify=CA,
)

print(json.dumps({
    "register": registered,
    "login": login_response.json(),
    "login_authorization_header": login_response.headers.get("Authorization"),
    "search_status": response.status_code,
    "search": response.json(),
}))
