"""A host site that lets its signed-in people into the chat: the whole of
what a site with its own logins adds is the /chat-token route.

    HOST_SECRET_KEY=... CHAT_TOKEN_SECRET=... \
        flask --app examples/host_site.py run --port 8000

and the chat started with the same CHAT_TOKEN_SECRET and
CHAT_TOKEN_URL=http://127.0.0.1:8000/chat-token (or a path, when both are
served under one origin behind a proxy).
"""

import os
import time

import jwt
from flask import Flask, jsonify, request, session

app = Flask(__name__)
app.secret_key = os.environ["HOST_SECRET_KEY"]
CHAT_TOKEN_SECRET = os.environ["CHAT_TOKEN_SECRET"]
CHAT_ORIGIN = os.environ.get("CHAT_ORIGIN", "http://127.0.0.1:5000")
TOKEN_SECONDS = 600  # the chat's page fetches a new one before it expires


@app.post("/login")
def login():
    """Stands in for the site's own login (passwords, SSO, ...)."""
    session["user"] = {
        "id": request.form["id"],
        "name": request.form["name"],
        "channels": request.form.getlist("channel"),  # e.g. "$staff"
    }
    return "", 204


@app.get("/chat-token")
def chat_token():
    """`{token}` for the signed-in person; 401 for anyone else."""
    user = session.get("user")
    if user is None:
        response = jsonify(error="sign in first")
        response.status_code = 401
    else:
        claims = {
            "sub": user["id"],
            "name": user["name"],
            "channels": user["channels"],
            "exp": int(time.time()) + TOKEN_SECONDS,
        }
        response = jsonify(token=jwt.encode(claims, CHAT_TOKEN_SECRET, "HS256"))
    # The chat's page asks with the person's cookies, from the chat's origin.
    response.headers["Access-Control-Allow-Origin"] = CHAT_ORIGIN
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Cache-Control"] = "no-store"
    return response
