//! Fleets: machines that name the same Redis (`--store`) share one budget, the pause of a
//! 429 included, and a store that is gone, silent or broken costs a warning, never a run.
//! A "machine" is a state directory of its own: all that two hosts share is the store.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bnx::pace::redis::{RedisStore, PREFIX};
use bnx::pace::{reserve, Slots, Store};
use bnx::rate::Rate;
use bnx::store::StoreUrl;

use crate::support::redis::Redis;
use crate::util::*;

/// The mock's limit, and the pacing every machine asks for.
const RATE: &str = "6/3";

/// One host of the fleet: its own state directory and, maybe, the shared store.
struct Machine {
    state: PathBuf,
    store: Option<String>,
}

impl Machine {
    fn new(mock: &Mock, name: &str, store: Option<&Redis>) -> Machine {
        let state = mock.dir.path().join(name);
        std::fs::create_dir_all(&state).unwrap();
        Machine {
            state,
            store: store.map(|redis| redis.url.clone()),
        }
    }

    /// `bnx` on this machine against `mock`, pacing at the mock's limit.
    fn bnx(&self, mock: &Mock) -> Command {
        let mut cmd = mock.command();
        cmd.env("XDG_STATE_HOME", &self.state)
            .args(["--rate-limit", RATE]);
        if let Some(url) = &self.store {
            cmd.env("BLUENEXUS_STORE", url);
        }
        cmd
    }
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `runs` single-request processes on every machine, `at_once` at a time on each (as `xargs
/// -P`), each with `args` and its own prompt `m{machine} run {i}`, while `during` runs here;
/// their outputs with their prompts.
fn fleet(
    mock: &Mock,
    machines: &[Machine],
    runs: usize,
    at_once: usize,
    args: &[&str],
    during: impl FnOnce(),
) -> Vec<(String, Output)> {
    thread::scope(|scope| {
        let pools: Vec<_> = machines
            .iter()
            .enumerate()
            .map(|(m, machine)| {
                scope.spawn(move || {
                    let mut running = Vec::new();
                    let mut done = Vec::new();
                    for i in 0..runs {
                        if running.len() == at_once {
                            let (prompt, child): (String, Child) = running.remove(0);
                            done.push((prompt, child.wait_with_output().unwrap()));
                        }
                        let prompt = format!("m{m} run {i}");
                        let mut cmd = machine.bnx(mock);
                        cmd.args(args).arg(&prompt);
                        running.push((prompt, spawn(cmd)));
                    }
                    for (prompt, child) in running {
                        done.push((prompt, child.wait_with_output().unwrap()));
                    }
                    done
                })
            })
            .collect();
        during();
        pools
            .into_iter()
            .flat_map(|pool| pool.join().unwrap())
            .collect()
    })
}

/// Asserts that the mock answered `n` different prompts, each with one 200 (a 429 before it
/// is no loss).
fn assert_each_answered_once(mock: &Mock, n: usize) {
    let mut answered: HashMap<String, usize> = HashMap::new();
    for request in mock.requests(n).iter().filter(|r| r["status"] == 200) {
        let prompt = request["body"]["messages"][0]["content"].as_str().unwrap();
        *answered.entry(prompt.to_string()).or_default() += 1;
    }
    assert!(
        answered.len() == n && answered.values().all(|&times| times == 1),
        "{answered:?}"
    );
}

/// A batch file of `n` items in `mock`'s directory: ids 0..n, prompts `item 0`...
fn items_file(mock: &Mock, n: usize) -> PathBuf {
    let items: String = (0..n)
        .map(|i| format!("{{\"id\": {i}, \"prompt\": \"item {i}\"}}\n"))
        .collect();
    let file = mock.dir.path().join("items.jsonl");
    std::fs::write(&file, items).unwrap();
    file
}

/// Waits for a batch whose store died under it, and asserts that it finished (exit 0) after
/// one warning saying so; its output lines.
fn finished_alone(batch: Child) -> Vec<Value> {
    let output = batch.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(warnings(&stderr), 1, "{stderr}");
    assert!(
        stderr.contains("bnx: warning: the store failed (redis://127.0.0.1:")
            && stderr.contains("); pacing on this machine alone"),
        "{stderr}"
    );
    stdout_of(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn warnings(stderr: &str) -> usize {
    stderr.matches("bnx: warning:").count()
}

#[test]
fn two_machines_sharing_a_store_stay_under_the_limit_together() {
    let Some(redis) = Redis::start() else { return };
    let mock = Mock::start(&["--rate-limit", RATE]);
    let machines = [
        Machine::new(&mock, "a", Some(&redis)),
        Machine::new(&mock, "b", Some(&redis)),
    ];
    let outputs = fleet(&mock, &machines, 12, 8, &["--retries", "0"], || {});
    let mut waited = 0;
    for (prompt, output) in &outputs {
        let stderr = stderr_of(output);
        assert_eq!(output.status.code(), Some(0), "{prompt}: {stderr}");
        assert_eq!(warnings(&stderr), 0, "{prompt}: {stderr}");
        waited += usize::from(stderr.contains("for a request slot (6 per 3s)"));
    }
    assert!(waited >= 6, "only {waited} of 24 runs waited for a slot");
    let requests = mock.requests(24);
    let limited = requests.iter().filter(|r| r["status"] != 200).count();
    assert_eq!((requests.len(), limited), (24, 0), "the mock refused some");
    assert_each_answered_once(&mock, 24);
}

#[test]
fn two_machines_each_pacing_alone_meet_429s() {
    let mock = Mock::start(&["--rate-limit", RATE]);
    let machines = [
        Machine::new(&mock, "a", None),
        Machine::new(&mock, "b", None),
    ];
    let outputs = fleet(&mock, &machines, 12, 8, &["--retries", "0"], || {});
    let failed = outputs
        .iter()
        .filter(|(_, o)| o.status.code() == Some(75))
        .count();
    let requests = mock.requests(24);
    let limited = requests.iter().filter(|r| r["status"] == 429).count();
    assert!(
        failed > 0 && limited == failed,
        "{failed} runs failed with 75, the mock sent {limited} 429s"
    );
}

#[test]
fn killing_the_store_mid_run_loses_no_request() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let mock = Mock::start(&["--rate-limit", RATE]);
    let machines = [
        Machine::new(&mock, "a", Some(&redis)),
        Machine::new(&mock, "b", Some(&redis)),
    ];
    // Once the store is gone each machine paces alone, so together they may send twice the
    // budget and meet 429s: the retries (and each machine's shared pause) absorb them.
    let outputs = fleet(&mock, &machines, 12, 4, &["--retries", "6"], || {
        assert!(mock.requests(8).len() >= 8, "the fleet never got going");
        redis.kill();
    });
    let mut warned = 0;
    for (prompt, output) in &outputs {
        let stderr = stderr_of(output);
        assert_eq!(output.status.code(), Some(0), "{prompt}: {stderr}");
        assert!(warnings(&stderr) <= 1, "{prompt}: {stderr}");
        if warnings(&stderr) == 1 {
            assert!(
                stderr.contains("; pacing on this machine alone"),
                "{prompt}: {stderr}"
            );
            warned += 1;
        }
    }
    assert!(warned > 0, "no run noticed the store was gone");
    assert_each_answered_once(&mock, 24);
}

#[test]
fn a_batch_whose_store_dies_mid_run_warns_once_and_finishes_alone() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let mock = Mock::start(&["--rate-limit", RATE]);
    let machine = Machine::new(&mock, "a", Some(&redis));
    let mut cmd = machine.bnx(&mock);
    cmd.arg("--batch")
        .arg(items_file(&mock, 12))
        .args(["--jobs", "4"]);
    let batch = spawn(cmd);
    assert!(mock.requests(6).len() >= 6, "the batch never got going");
    redis.kill();
    let lines = finished_alone(batch);
    assert_eq!(lines.len(), 12);
    assert!(
        lines.iter().all(|l| l["bnx"]["exit_code"] == 0),
        "{lines:?}"
    );
    assert_each_answered_once(&mock, 12);
}

#[test]
fn a_store_that_dies_hands_over_this_machines_slots_and_no_429_follows() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    // Four a window of 6 s on both sides. Each answer streams for two seconds after the mock
    // admits it, so the first four items are still in flight when the store dies, and the
    // next four reserve their slots after it, from this machine's file alone.
    let mock = Mock::start(&[
        "--rate-limit",
        "4/6",
        "--chunks",
        "2",
        "--chunk-delay",
        "1000",
    ]);
    let machine = Machine::new(&mock, "a", Some(&redis));
    let mut cmd = machine.bnx(&mock);
    cmd.arg("--batch")
        .arg(items_file(&mock, 8))
        .args(["-s", "-j", "4", "--rate-limit", "4/6"]);
    let batch = spawn(cmd);
    let mut look = redis.connection();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{PREFIX}*:slots"))
            .query(&mut look)
            .unwrap();
        if keys.len() == 1 && list(&mut look, &keys[0]).len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the batch never took its slots");
        thread::sleep(Duration::from_millis(5));
    }
    redis.kill();
    assert_eq!(finished_alone(batch).len(), 8);
    let statuses: Vec<Value> = mock
        .requests(8)
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(200); 8], "a 429 after the store died");
    assert_each_answered_once(&mock, 8);
}

#[test]
fn a_429_paused_through_the_store_holds_the_other_machine() {
    let Some(redis) = Redis::start() else { return };
    let mock = Mock::start(&["--fault", "429:2"]);
    let (a, b) = (
        Machine::new(&mock, "a", Some(&redis)),
        Machine::new(&mock, "b", Some(&redis)),
    );
    let mut first = a.bnx(&mock);
    first.args(["--retries", "1", "first"]);
    let mut second = b.bnx(&mock);
    second.arg("second");
    assert_a_429_pauses_the_other(&mock, first, second);
}

#[test]
fn keys_are_digests_that_expire_and_hold_no_token() {
    let Some(redis) = Redis::start() else { return };
    let secret = "tok-FLEET-SECRET-271828";
    let mock = Mock::start(&["--token", secret, "--fault", "429:5"]);
    let mut cmd = mock.command();
    cmd.env("BLUENEXUS_TOKEN", secret)
        .env("BLUENEXUS_RATE_STORE", &redis.url)
        .args(["--retries", "1", "hi"]);
    let run = spawn(cmd);
    assert_eq!(mock.requests(1)[0]["status"], 429);
    // Looked at during the 429's pause, while both keys matter.
    let mut redis = redis.connection();
    let deadline = Instant::now() + Duration::from_secs(5);
    let keys = loop {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis).unwrap();
        if keys.len() == 2 || Instant::now() > deadline {
            keys.sort();
            break keys;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(keys.len(), 2, "{keys:?}");
    let digest = keys[0]
        .strip_prefix(&format!("{PREFIX}{{"))
        .and_then(|rest| rest.strip_suffix("}:paused"))
        .unwrap_or_else(|| panic!("{keys:?}"));
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(keys[1], format!("{PREFIX}{{{digest}}}:slots"));
    let paused: String = redis::cmd("GET").arg(&keys[0]).query(&mut redis).unwrap();
    let slots: Vec<String> = redis::cmd("LRANGE")
        .arg(&keys[1])
        .arg(0)
        .arg(-1)
        .query(&mut redis)
        .unwrap();
    assert_eq!(slots.len(), 1, "the attempt that met the 429");
    for value in slots.iter().chain([&paused]) {
        assert!(value.bytes().all(|b| b.is_ascii_digit()), "{value}");
    }
    for key in &keys {
        assert!(!key.contains("SECRET") && !key.contains("271828"), "{key}");
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut redis).unwrap();
        assert!(ttl > 0, "{key} does not expire: {ttl}");
    }
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
}

#[test]
fn a_store_that_is_gone_or_silent_costs_a_warning_not_a_hang() {
    let mock = Mock::start(&[]);
    let machine = Machine::new(&mock, "a", None);
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://{}", silent.local_addr().unwrap());
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_url = format!("redis://{}", gone.local_addr().unwrap());
    drop(gone);
    for (url, why) in [
        (&silent_url, "(no answer within 2s)"),
        (&gone_url, "refused"),
    ] {
        let mut cmd = assert_cmd::Command::from_std(machine.bnx(&mock));
        cmd.timeout(Duration::from_secs(20))
            .args(["--rate-store", url, "hi"])
            .assert()
            .success()
            .stdout("[turn 1] hi\n")
            .stderr(
                predicate::str::contains(format!(
                    "bnx: warning: the store {url}/0 cannot be reached"
                ))
                .count(1),
            )
            .stderr(predicate::str::contains(why))
            .stderr(predicate::str::contains(
                "; pacing on this machine alone, credits recorded on this machine only\n",
            ));
    }
    assert_eq!(mock.requests(2).len(), 2);
}

/// A fake Redis on 127.0.0.1 that logs a connection in (AUTH and SELECT get `+OK`, PING
/// `+PONG`), records each command, and at the first EVALSHA hands the connection to
/// `misbehave`: a hostile store, as a std socket.
struct FakeRedis {
    port: u16,
    commands: Arc<Mutex<Vec<String>>>,
}

impl FakeRedis {
    fn start(misbehave: fn(&mut TcpStream)) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&commands);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let record = Arc::clone(&record);
                thread::spawn(move || {
                    let mut received = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        received.extend_from_slice(&buf[..n]);
                        while let Some((args, used)) = resp_command(&received) {
                            received.drain(..used);
                            record.lock().unwrap().push(args.join(" "));
                            let reply: &[u8] = match args[0].as_str() {
                                "EVALSHA" | "EVAL" => return misbehave(&mut stream),
                                "PING" => b"+PONG\r\n",
                                _ => b"+OK\r\n",
                            };
                            if stream.write_all(reply).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeRedis { port, commands }
    }

    /// `bnx --rate-store` this store on `machine`, `hi` its prompt.
    fn bnx(&self, mock: &Mock, machine: &Machine) -> Command {
        let mut cmd = machine.bnx(mock);
        cmd.args([
            "--rate-store",
            &format!("redis://ci:pw@127.0.0.1:{}/3", self.port),
        ])
        .arg("hi");
        cmd
    }
}

/// The first whole command in `received` (a RESP array of bulk strings), and its length.
fn resp_command(received: &[u8]) -> Option<(Vec<String>, usize)> {
    let mut at = 0;
    let line = |at: &mut usize| {
        let end = *at + received[*at..].windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&received[*at..end]).into_owned();
        *at = end + 2;
        Some(line)
    };
    let count: usize = line(&mut at)?.strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::new();
    for _ in 0..count {
        let len: usize = line(&mut at)?.strip_prefix('$')?.parse().ok()?;
        let arg = received.get(at..at + len + 2)?;
        args.push(String::from_utf8_lossy(&arg[..len]).into_owned());
        at += len + 2;
    }
    Some((args, at))
}

/// Waits up to 30 s for the client to close the connection.
fn hold(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.read(&mut [0u8; 1]);
}

/// Runs `bnx hi` with `store` as its rate store and asserts that it answered, soon and small,
/// with one warning of one line, which it returns. The stores below give up within a minute,
/// so that a run that would wait for them still ends, and fails the test by its time.
fn warned_once(store: &FakeRedis) -> String {
    let mock = Mock::start(&[]);
    let machine = Machine::new(&mock, "a", None);
    let run = run_measured(&mut store.bnx(&mock, &machine));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "[turn 1] hi\n");
    assert_eq!(mock.requests(1).len(), 1);
    assert!(run.elapsed < Duration::from_secs(15), "{:?}", run.elapsed);
    assert!(
        run.max_rss_kib < 64 * 1024,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
    let stderr = run.stderr;
    let warning = format!(
        "bnx: warning: the store failed (redis://***@127.0.0.1:{}/3: ",
        store.port
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&warning)
            && stderr.ends_with(
                "); pacing on this machine alone, credits recorded on this machine only\n"
            ),
        "{stderr}"
    );
    assert!(!stderr.contains("pw"), "{stderr}");
    stderr
}

#[test]
fn a_store_that_drips_its_reply_costs_a_warning_within_the_limit() {
    // A byte each half second: never silent for the 2 s a read may wait, never done.
    let store = FakeRedis::start(|stream| {
        for _ in 0..120 {
            if stream.write_all(b"+").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(500));
        }
    });
    let warning = warned_once(&store);
    assert!(warning.contains("no answer within 2s"), "{warning}");
    let commands = store.commands.lock().unwrap().clone();
    assert_eq!(commands[..2], ["AUTH ci pw", "SELECT 3"]);
    assert!(commands[2].starts_with("EVALSHA "), "{commands:?}");
}

#[test]
fn a_store_refusing_a_wait_longer_than_a_pause_can_be_costs_a_warning() {
    // Three years: no pause or slot reaches that far, whatever the other machines did.
    let store = FakeRedis::start(|stream| {
        if stream.write_all(b"*2\r\n:0\r\n:99999999999\r\n").is_ok() {
            hold(stream);
        }
    });
    let warning = warned_once(&store);
    assert!(
        warning.contains("unexpected answer (0, 99999999999)"),
        "{warning}"
    );
}

#[test]
fn a_store_announcing_a_huge_reply_costs_a_warning_not_memory() {
    // 2 GB announced, then as much as the client reads, up to 1 GiB.
    let store = FakeRedis::start(|stream| {
        let block = [b'a'; 64 * 1024];
        let mut sent = stream.write_all(b"$2000000000\r\n");
        for _ in 0..16 * 1024 {
            sent = sent.and_then(|()| stream.write_all(&block));
        }
        if sent.is_ok() {
            hold(stream);
        }
    });
    let warning = warned_once(&store);
    assert!(warning.contains("a reply larger than 64 KiB"), "{warning}");
}

#[test]
fn a_stores_error_of_several_lines_is_one_warning_line() {
    // A RESP3 blob error, whose text may hold anything: line breaks, terminal escapes.
    let store = FakeRedis::start(|stream| {
        let text = "ERR first\r\nsecond\n\u{1b}[31mthird";
        if stream
            .write_all(format!("!{}\r\n{text}\r\n", text.len()).as_bytes())
            .is_ok()
        {
            hold(stream);
        }
    });
    let warning = warned_once(&store);
    assert!(warning.contains("first second [31mthird"), "{warning}");
}

#[test]
fn a_bad_store_url_is_a_configuration_error() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--rate-store", "http://127.0.0.1:6379", "x"])
        .assert()
        .code(78)
        .stderr(predicate::str::starts_with(
            "bnx: error: bad store URL: the scheme must be redis://\nhint: use redis://",
        ));
    mock.bnx()
        .env(
            "BLUENEXUS_RATE_STORE",
            "redis://:hunter2@127.0.0.1:6379/zero",
        )
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("database number"))
        .stderr(predicate::str::contains("hunter2").not());
    mock.assert_no_requests();
}

/// The store's rule is `pace::reserve`'s: every reservation replayed through the pure rule at
/// the server's clock (the slot it took less the wait it returned) takes the same slot.
#[test]
fn the_store_runs_the_rule_of_pace_reserve_on_the_servers_clock() {
    let Some(redis) = Redis::start() else { return };
    let url: StoreUrl = redis.url.parse().unwrap();
    let store = RedisStore::new(Arc::new(bnx::store::Redis::connect(&url)));
    let mut look = redis.connection();
    let key = "0".repeat(64);
    let slots_key = format!("{PREFIX}{{{key}}}:slots");
    let paused_key = format!("{PREFIX}{{{key}}}:paused");
    let rate = Rate {
        requests: 3,
        window: Duration::from_millis(600),
    };
    let evals = |look: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(look).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    let mut replayed = Slots::default();
    for step in 0..24u64 {
        match step {
            8 => store.pause(&key, Duration::from_millis(700)).unwrap(),
            // The server forgets its scripts (a restart, a failover): EVAL takes over.
            16 => redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query::<()>(&mut look)
                .unwrap(),
            _ => {}
        }
        if step == 8 {
            let paused: String = redis::cmd("GET").arg(&paused_key).query(&mut look).unwrap();
            replayed.paused_until = paused.parse().unwrap();
        }
        let wait = store
            .reserve(&key, rate, Duration::from_secs(60))
            .unwrap()
            .unwrap();
        let at: String = redis::cmd("LINDEX")
            .arg(&slots_key)
            .arg(-1)
            .query(&mut look)
            .unwrap();
        let at: u64 = at.parse().unwrap();
        let now = at - u64::try_from(wait.as_millis()).unwrap();
        assert_eq!(
            reserve(&mut replayed, now, rate, Duration::from_secs(60)),
            Ok(at),
            "step {step}"
        );
        assert_eq!(list(&mut look, &slots_key), replayed.taken, "step {step}");
        // Each script's first call, and the first after the flush, is the only EVAL.
        let expected = match step {
            0..8 => 1,
            8..16 => 2,
            _ => 3,
        };
        assert_eq!(evals(&mut look), expected, "step {step}");
        thread::sleep(Duration::from_millis((step * 7919) % 250));
    }
    // Once the window is full, a wait past the limit is refused and takes nothing.
    let refused = (0..4).find_map(|_| {
        let before = list(&mut look, &slots_key);
        let reserved = store.reserve(&key, rate, Duration::ZERO).unwrap();
        reserved.err().map(|wait| (before, wait))
    });
    let (before, wait) = refused.expect("a full window refuses a zero wait");
    assert!(wait > Duration::ZERO);
    assert_eq!(list(&mut look, &slots_key), before);
}

fn list(look: &mut redis::Connection, key: &str) -> Vec<u64> {
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(look)
        .unwrap();
    items.iter().map(|s| s.parse().unwrap()).collect()
}
