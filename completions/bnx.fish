complete -c bnx -s a -l agent -d 'Agent to chat with [env: BLUENEXUS_AGENT] [default: default]' -r
complete -c bnx -l base-url -d 'API origin; plain http:// only for loopback [env: BLUENEXUS_BASE_URL] [default: https://api.bluenexus.ai]' -r
complete -c bnx -l token-file -d 'File holding the access token (mode 600)' -r -F
complete -c bnx -l token-cmd -d 'Shell command that prints the token, e.g. a password manager [env: BLUENEXUS_TOKEN_CMD]' -r
complete -c bnx -l temperature -d 'Sampling temperature, 0.0 to 2.0 [default: the agent\'s own]' -r
complete -c bnx -l max-tokens -d 'Longest answer, in tokens [default: the agent\'s own]' -r
complete -c bnx -l conversation -d 'Continue the conversation with this id' -r
complete -c bnx -l timeout -d 'Seconds to wait for the answer to start (and, non-streaming, to finish); streaming, the longest silence allowed between two events' -r
complete -c bnx -l connect-timeout -d 'Seconds allowed for TCP and TLS connect' -r
complete -c bnx -l retries -d 'Retries on connect errors, timeouts, 429, 500, 502, 503 and 504 (0 to 100)' -r
complete -c bnx -l max-retry-wait -d 'Longest single wait before a retry; a longer Retry-After fails at once' -r
complete -c bnx -l rate-limit -d 'Pace requests to N per rolling SECS seconds, shared by every bnx process of this user for the same API and token; 0 turns pacing off [env: BLUENEXUS_RATE_LIMIT] [default: 30/60]' -r
complete -c bnx -l store -d 'Share pacing and the credit ledger with every machine that names the same Redis server, redis://HOST:PORT[/DB]; unreachable or failing, it costs a warning and this machine paces and counts alone, except that --budget and --min-credits refuse to send. Empty: this machine alone [env: BLUENEXUS_STORE]' -r
complete -c bnx -l rate-store -d 'The older name of --store; --store wins when both are given [env: BLUENEXUS_RATE_STORE]' -r
complete -c bnx -l budget -d 'Credits that all bnx processes of this user (or the fleet, with --store) may consume per rolling PERIOD for this API and token, PERIOD 60s to 31d as 3600, 90m, 12h, 1d or 7d; past it, requests are refused with exit 4. "off" turns off BLUENEXUS_BUDGET [env: BLUENEXUS_BUDGET] [default PERIOD: 1d]' -r
complete -c bnx -l min-credits -d 'Send no request (a batch: start no new item) once the last X-Credits-Remaining seen for this API and token, by any bnx process of this user (or the fleet), is below N' -r
complete -c bnx -l batch -d 'Run every line of a JSONL file as its own request ("-" for stdin); see "Batches" below' -r -F
complete -c bnx -s j -l jobs -d 'With --batch: requests in flight at once, 1 to 64' -r
complete -c bnx -l max-credits -d 'With --batch: start no new item once the credits this run consumed reach N, or the items in flight could pass it; 0 sends nothing' -r
complete -c bnx -l messages -d 'JSON array of {"role","content"} messages to send ("-" for stdin)' -r -F
complete -c bnx -l system -d 'System message put before the conversation' -r
complete -c bnx -s f -l file -d 'Add a file to the prompt, as <file name="PATH">...</file>, after the PROMPT words and before stdin; repeatable' -r -F
complete -c bnx -s o -l output -d 'Write to FILE instead of stdout, replacing it only when the run succeeds (the file\'s mode is kept); "-" is stdout. With --batch: append the item lines to FILE, and on a rerun skip the items it records as done' -r -F
complete -c bnx -l schema -d 'As --expect-json, and the value must be valid against this JSON Schema: a file, or the schema itself when it starts with "{" (drafts 2020-12, 2019-09, 7, 6, 4; nothing is fetched); else exit 3. See "Schemas" below' -r
complete -c bnx -l reask -d 'When the answer is not what -x, --expect-json or --schema asked for, ask again up to N times (0 to 5), saying what was wrong; each re-ask is a request of its own' -r
complete -c bnx -l completions -d 'Print the completion script for SHELL and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c bnx -s s -l stream -d 'Stream the answer, writing each piece as it arrives'
complete -c bnx -l json -d 'Write JSON: the response plus a "bnx" key; with --stream, one line per event'
complete -c bnx -s c -l continue -d 'Continue this agent\'s last conversation'
complete -c bnx -l spent -d 'Print the credits consumed for this API and token in the last hour, day, 7 and 30 days, the last balance seen and the budget; send nothing (with --json, one document)'
complete -c bnx -s n -l no-stdin -d 'Never read standard input (for `while read` loops, as `ssh -n`)'
complete -c bnx -s x -l extract -d 'Write only the content of the answer\'s first fenced code block; none is exit 3'
complete -c bnx -l expect-json -d 'The answer must be one JSON value (one surrounding ``` fence is removed); it is written compact on one line, else exit 3'
complete -c bnx -l fail-on-length -d 'Exit 3 when the answer was cut at the token limit, instead of a notice'
complete -c bnx -l dry-run -d 'Print the request as JSON (token redacted) and send nothing; needs no token, runs no token command'
complete -c bnx -s q -l quiet -d 'No notices on stderr (errors still print)'
complete -c bnx -s v -l verbose -d 'Request, status, timing, credits, conversation and retries on stderr'
complete -c bnx -s h -l help -d 'Print help'
complete -c bnx -s V -l version -d 'Print version'
