-- wrk script for load.sh's ficus-jwt-miss: every request carries the next token of a pool
-- (one token a line in the file given after `--`), cycling, so that with a pool larger
-- than the policy's cache_size nearly every request is a full verification.
--   wrk -t1 -c32 -d10s -s benches/jwt-pool.lua URL -- pool.txt
-- The requests are formatted once, in init: the generator's per-request work is an index.
local reqs = {}
local i = 0

function init(args)
    local file = args[1] or error("jwt-pool.lua: give the token pool file after --")
    for line in io.lines(file) do
        if #line > 0 then
            reqs[#reqs + 1] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
        end
    end
    if #reqs == 0 then
        error("jwt-pool.lua: no tokens in " .. file)
    end
    -- Each wrk run starts somewhere else in the pool, so the warm-up and the sample that
    -- follows it do not replay the same first tokens.
    math.randomseed(os.time())
    i = math.random(#reqs) - 1
end

function request()
    i = i + 1
    if i > #reqs then
        i = 1
    end
    return reqs[i]
end
