
use builtin;
use str;

set edit:completion:arg-completer[bnx] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'bnx'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'bnx'= {
            cand -a 'Agent to chat with [env: BLUENEXUS_AGENT] [default: default]'
            cand --agent 'Agent to chat with [env: BLUENEXUS_AGENT] [default: default]'
            cand --base-url 'API origin; plain http:// only for loopback [env: BLUENEXUS_BASE_URL] [default: https://api.bluenexus.ai]'
            cand --token-file 'File holding the access token (mode 600)'
            cand --token-cmd 'Shell command that prints the token, e.g. a password manager [env: BLUENEXUS_TOKEN_CMD]'
            cand --temperature 'Sampling temperature, 0.0 to 2.0 [default: the agent''s own]'
            cand --max-tokens 'Longest answer, in tokens [default: the agent''s own]'
            cand --conversation 'Continue the conversation with this id'
            cand --timeout 'Seconds to wait for the answer to start (and, non-streaming, to finish); streaming, the longest silence allowed between two events'
            cand --connect-timeout 'Seconds allowed for TCP and TLS connect'
            cand --retries 'Retries on connect errors, timeouts, 429, 500, 502, 503 and 504 (0 to 100)'
            cand --max-retry-wait 'Longest single wait before a retry; a longer Retry-After fails at once'
            cand --rate-limit 'Pace requests to N per rolling SECS seconds, shared by every bnx process of this user for the same API and token; 0 turns pacing off [env: BLUENEXUS_RATE_LIMIT] [default: 30/60]'
            cand --store 'Share pacing and the credit ledger with every machine that names the same Redis server, redis://HOST:PORT[/DB]; unreachable or failing, it costs a warning and this machine paces and counts alone, except that --budget and --min-credits refuse to send. Empty: this machine alone [env: BLUENEXUS_STORE]'
            cand --rate-store 'The older name of --store; --store wins when both are given [env: BLUENEXUS_RATE_STORE]'
            cand --budget 'Credits that all bnx processes of this user (or the fleet, with --store) may consume per rolling PERIOD for this API and token, PERIOD 60s to 31d as 3600, 90m, 12h, 1d or 7d; past it, requests are refused with exit 4. "off" turns off BLUENEXUS_BUDGET [env: BLUENEXUS_BUDGET] [default PERIOD: 1d]'
            cand --min-credits 'Send no request (a batch: start no new item) once the last X-Credits-Remaining seen for this API and token, by any bnx process of this user (or the fleet), is below N'
            cand --batch 'Run every line of a JSONL file as its own request ("-" for stdin); see "Batches" below'
            cand -j 'With --batch: requests in flight at once, 1 to 64'
            cand --jobs 'With --batch: requests in flight at once, 1 to 64'
            cand --max-credits 'With --batch: start no new item once the credits this run consumed reach N, or the items in flight could pass it; 0 sends nothing'
            cand --messages 'JSON array of {"role","content"} messages to send ("-" for stdin)'
            cand --system 'System message put before the conversation'
            cand -f 'Add a file to the prompt, as <file name="PATH">...</file>, after the PROMPT words and before stdin; repeatable'
            cand --file 'Add a file to the prompt, as <file name="PATH">...</file>, after the PROMPT words and before stdin; repeatable'
            cand -o 'Write to FILE instead of stdout, replacing it only when the run succeeds (the file''s mode is kept); "-" is stdout. With --batch: append the item lines to FILE, and on a rerun skip the items it records as done'
            cand --output 'Write to FILE instead of stdout, replacing it only when the run succeeds (the file''s mode is kept); "-" is stdout. With --batch: append the item lines to FILE, and on a rerun skip the items it records as done'
            cand --schema 'As --expect-json, and the value must be valid against this JSON Schema: a file, or the schema itself when it starts with "{" (drafts 2020-12, 2019-09, 7, 6, 4; nothing is fetched); else exit 3. See "Schemas" below'
            cand --reask 'When the answer is not what -x, --expect-json or --schema asked for, ask again up to N times (0 to 5), saying what was wrong; each re-ask is a request of its own'
            cand --completions 'Print the completion script for SHELL and exit'
            cand -s 'Stream the answer, writing each piece as it arrives'
            cand --stream 'Stream the answer, writing each piece as it arrives'
            cand --json 'Write JSON: the response plus a "bnx" key; with --stream, one line per event'
            cand -c 'Continue this agent''s last conversation'
            cand --continue 'Continue this agent''s last conversation'
            cand --spent 'Print the credits consumed for this API and token in the last hour, day, 7 and 30 days, the last balance seen and the budget; send nothing (with --json, one document)'
            cand -n 'Never read standard input (for `while read` loops, as `ssh -n`)'
            cand --no-stdin 'Never read standard input (for `while read` loops, as `ssh -n`)'
            cand -x 'Write only the content of the answer''s first fenced code block; none is exit 3'
            cand --extract 'Write only the content of the answer''s first fenced code block; none is exit 3'
            cand --expect-json 'The answer must be one JSON value (one surrounding ``` fence is removed); it is written compact on one line, else exit 3'
            cand --fail-on-length 'Exit 3 when the answer was cut at the token limit, instead of a notice'
            cand --dry-run 'Print the request as JSON (token redacted) and send nothing; needs no token, runs no token command'
            cand -q 'No notices on stderr (errors still print)'
            cand --quiet 'No notices on stderr (errors still print)'
            cand -v 'Request, status, timing, credits, conversation and retries on stderr'
            cand --verbose 'Request, status, timing, credits, conversation and retries on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
    ]
    $completions[$command]
}
