"""The browser check's control: the same book routes under stock FastAPI, whose /docs loads Swagger UI from a CDN.
With the network cut, its /docs must render nothing, which shows that the cut works."""

from fastapi import FastAPI

import main

app = FastAPI(title="Book API on stock FastAPI", lifespan=main.lifespan)
app.include_router(main.reads)
app.include_router(main.writes)
app.add_api_route("/health", main.health)
