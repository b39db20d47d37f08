
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'bnx' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'bnx'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'bnx' {
            [CompletionResult]::new('-a', '-a', [CompletionResultType]::ParameterName, 'Agent to chat with [env: BLUENEXUS_AGENT] [default: default]')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Agent to chat with [env: BLUENEXUS_AGENT] [default: default]')
            [CompletionResult]::new('--base-url', '--base-url', [CompletionResultType]::ParameterName, 'API origin; plain http:// only for loopback [env: BLUENEXUS_BASE_URL] [default: https://api.bluenexus.ai]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding the access token (mode 600)')
            [CompletionResult]::new('--token-cmd', '--token-cmd', [CompletionResultType]::ParameterName, 'Shell command that prints the token, e.g. a password manager [env: BLUENEXUS_TOKEN_CMD]')
            [CompletionResult]::new('--temperature', '--temperature', [CompletionResultType]::ParameterName, 'Sampling temperature, 0.0 to 2.0 [default: the agent''s own]')
            [CompletionResult]::new('--max-tokens', '--max-tokens', [CompletionResultType]::ParameterName, 'Longest answer, in tokens [default: the agent''s own]')
            [CompletionResult]::new('--conversation', '--conversation', [CompletionResultType]::ParameterName, 'Continue the conversation with this id')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the answer to start (and, non-streaming, to finish); streaming, the longest silence allowed between two events')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Seconds allowed for TCP and TLS connect')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries on connect errors, timeouts, 429, 500, 502, 503 and 504 (0 to 100)')
            [CompletionResult]::new('--max-retry-wait', '--max-retry-wait', [CompletionResultType]::ParameterName, 'Longest single wait before a retry; a longer Retry-After fails at once')
            [CompletionResult]::new('--rate-limit', '--rate-limit', [CompletionResultType]::ParameterName, 'Pace requests to N per rolling SECS seconds, shared by every bnx process of this user for the same API and token; 0 turns pacing off [env: BLUENEXUS_RATE_LIMIT] [default: 30/60]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share pacing and the credit ledger with every machine that names the same Redis server, redis://HOST:PORT[/DB]; unreachable or failing, it costs a warning and this machine paces and counts alone, except that --budget and --min-credits refuse to send. Empty: this machine alone [env: BLUENEXUS_STORE]')
            [CompletionResult]::new('--rate-store', '--rate-store', [CompletionResultType]::ParameterName, 'The older name of --store; --store wins when both are given [env: BLUENEXUS_RATE_STORE]')
            [CompletionResult]::new('--budget', '--budget', [CompletionResultType]::ParameterName, 'Credits that all bnx processes of this user (or the fleet, with --store) may consume per rolling PERIOD for this API and token, PERIOD 60s to 31d as 3600, 90m, 12h, 1d or 7d; past it, requests are refused with exit 4. "off" turns off BLUENEXUS_BUDGET [env: BLUENEXUS_BUDGET] [default PERIOD: 1d]')
            [CompletionResult]::new('--min-credits', '--min-credits', [CompletionResultType]::ParameterName, 'Send no request (a batch: start no new item) once the last X-Credits-Remaining seen for this API and token, by any bnx process of this user (or the fleet), is below N')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Run every line of a JSONL file as its own request ("-" for stdin); see "Batches" below')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'With --batch: requests in flight at once, 1 to 64')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'With --batch: requests in flight at once, 1 to 64')
            [CompletionResult]::new('--max-credits', '--max-credits', [CompletionResultType]::ParameterName, 'With --batch: start no new item once the credits this run consumed reach N, or the items in flight could pass it; 0 sends nothing')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'JSON array of {"role","content"} messages to send ("-" for stdin)')
            [CompletionResult]::new('--system', '--system', [CompletionResultType]::ParameterName, 'System message put before the conversation')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Add a file to the prompt, as <file name="PATH">...</file>, after the PROMPT words and before stdin; repeatable')
            [CompletionResult]::new('--file', '--file', [CompletionResultType]::ParameterName, 'Add a file to the prompt, as <file name="PATH">...</file>, after the PROMPT words and before stdin; repeatable')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write to FILE instead of stdout, replacing it only when the run succeeds (the file''s mode is kept); "-" is stdout. With --batch: append the item lines to FILE, and on a rerun skip the items it records as done')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write to FILE instead of stdout, replacing it only when the run succeeds (the file''s mode is kept); "-" is stdout. With --batch: append the item lines to FILE, and on a rerun skip the items it records as done')
            [CompletionResult]::new('--schema', '--schema', [CompletionResultType]::ParameterName, 'As --expect-json, and the value must be valid against this JSON Schema: a file, or the schema itself when it starts with "{" (drafts 2020-12, 2019-09, 7, 6, 4; nothing is fetched); else exit 3. See "Schemas" below')
            [CompletionResult]::new('--reask', '--reask', [CompletionResultType]::ParameterName, 'When the answer is not what -x, --expect-json or --schema asked for, ask again up to N times (0 to 5), saying what was wrong; each re-ask is a request of its own')
            [CompletionResult]::new('--completions', '--completions', [CompletionResultType]::ParameterName, 'Print the completion script for SHELL and exit')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Stream the answer, writing each piece as it arrives')
            [CompletionResult]::new('--stream', '--stream', [CompletionResultType]::ParameterName, 'Stream the answer, writing each piece as it arrives')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Write JSON: the response plus a "bnx" key; with --stream, one line per event')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Continue this agent''s last conversation')
            [CompletionResult]::new('--continue', '--continue', [CompletionResultType]::ParameterName, 'Continue this agent''s last conversation')
            [CompletionResult]::new('--spent', '--spent', [CompletionResultType]::ParameterName, 'Print the credits consumed for this API and token in the last hour, day, 7 and 30 days, the last balance seen and the budget; send nothing (with --json, one document)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Never read standard input (for `while read` loops, as `ssh -n`)')
            [CompletionResult]::new('--no-stdin', '--no-stdin', [CompletionResultType]::ParameterName, 'Never read standard input (for `while read` loops, as `ssh -n`)')
            [CompletionResult]::new('-x', '-x', [CompletionResultType]::ParameterName, 'Write only the content of the answer''s first fenced code block; none is exit 3')
            [CompletionResult]::new('--extract', '--extract', [CompletionResultType]::ParameterName, 'Write only the content of the answer''s first fenced code block; none is exit 3')
            [CompletionResult]::new('--expect-json', '--expect-json', [CompletionResultType]::ParameterName, 'The answer must be one JSON value (one surrounding ``` fence is removed); it is written compact on one line, else exit 3')
            [CompletionResult]::new('--fail-on-length', '--fail-on-length', [CompletionResultType]::ParameterName, 'Exit 3 when the answer was cut at the token limit, instead of a notice')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the request as JSON (token redacted) and send nothing; needs no token, runs no token command')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No notices on stderr (errors still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No notices on stderr (errors still print)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Request, status, timing, credits, conversation and retries on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Request, status, timing, credits, conversation and retries on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
