-- GET /products/<id>, cycling over the ids given after `--` (comma-separated).
-- The requests are built once in init(): request() only hands out the next one.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local requests = {}
local index = 0

function init(args)
  for id in string.gmatch(args[1] or "1", "%d+") do
    requests[#requests + 1] = wrk.format("GET", "/products/" .. id)
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end
