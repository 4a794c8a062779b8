-- POST /products with a JSON body; one static request, so wrk needs no Lua per request.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

wrk.method = "POST"
wrk.path = "/products"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name": "bench product", "price": 9.99, "category": "bench"}'
