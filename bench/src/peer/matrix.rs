//! The Matrix side: starts Synapse from the directory `peer-synapse.sh`
//! prepared, registers the bench users and rooms over the client-server API
//! once, and drives the workloads with the Matrix endpoints.

use std::sync::Arc;

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use super::*;

/// Synapse's long-poll: the incremental `/sync` a client runs.
const SYNC_FILTER: &str =
    r#"{"room":{"timeline":{"limit":100},"state":{"lazy_load_members":true}}}"#;
/// The first `/sync` only needs a `since` token.
const INIT_FILTER: &str = r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}"#;
const PAGE_FILTER: &str = r#"{"lazy_load_members":true}"#;
/// Rooms the send workload spreads over (2 members each).
const SEND_ROOMS: usize = 64;

pub(super) fn version(dir: &str) -> String {
    std::process::Command::new(format!("{dir}/venv/bin/python"))
        .args(["-c", "import synapse; print(synapse.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// What the workloads need; registered once, reused across restarts.
#[derive(Clone, Default)]
struct State {
    /// (user id, access token)
    users: Vec<(String, String)>,
    send_rooms: Vec<String>,
    fan_room: String,
    hist_room: String,
    deep_from: String,
}

impl State {
    fn to_json(&self) -> Value {
        json!({"users": self.users, "send_rooms": self.send_rooms, "fan_room": self.fan_room,
               "hist_room": self.hist_room, "deep_from": self.deep_from})
    }

    fn from_json(v: &Value) -> Option<Self> {
        let strs = |k: &str| -> Option<Vec<String>> {
            v[k].as_array()?
                .iter()
                .map(|x| Some(x.as_str()?.to_string()))
                .collect()
        };
        let users = v["users"]
            .as_array()?
            .iter()
            .map(|u| Some((u[0].as_str()?.to_string(), u[1].as_str()?.to_string())))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            users,
            send_rooms: strs("send_rooms")?,
            fan_room: v["fan_room"].as_str()?.to_string(),
            hist_room: v["hist_room"].as_str()?.to_string(),
            deep_from: v["deep_from"].as_str()?.to_string(),
        })
    }
}

pub(super) struct Setup {
    dir: String,
    base: String,
    members: usize,
    history: u32,
    state: Option<State>,
}

pub(super) struct Synapse {
    child: Child,
    pid: u32,
    base: String,
    http: reqwest::Client,
    st: Arc<State>,
    members: usize,
    /// Makes transaction ids unique across runs.
    nonce: String,
    txn: AtomicU64,
}

impl Setup {
    pub(super) fn new(p: &PeerArgs) -> Self {
        Self {
            dir: p.synapse_dir.clone(),
            base: format!("http://127.0.0.1:{}", p.synapse_port),
            members: p.members as usize,
            history: p.history,
            state: None,
        }
    }

    pub(super) async fn start(&mut self, presence: bool) -> anyhow::Result<Synapse> {
        let dir = &self.dir;
        let mut cmd = Command::new(format!("{dir}/venv/bin/python"));
        cmd.args(["-m", "synapse.app.homeserver", "-c"])
            .arg(format!("{dir}/homeserver.yaml"));
        if !presence {
            cmd.arg("-c").arg(format!("{dir}/presence-off.yaml"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/synapse.log"))
            .context("run bench/peer-synapse.sh first")?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting Synapse; run bench/peer-synapse.sh first")?;
        let pid = child.id().context("Synapse exited")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(120))
            .build()?;
        let mut up = false;
        for _ in 0..600 {
            let r = http
                .get(format!("{}/_matrix/client/versions", self.base))
                .send()
                .await;
            if r.map(|r| r.status().is_success()).unwrap_or(false) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !up {
            bail!(
                "Synapse did not answer on {} (see {dir}/synapse.log)",
                self.base
            );
        }
        if self.state.is_none() {
            self.state = Some(self.load_or_populate(&http).await?);
        }
        Ok(Synapse {
            child,
            pid,
            base: self.base.clone(),
            http,
            st: Arc::new(self.state.clone().unwrap_or_default()),
            members: self.members,
            nonce: Uuid::new_v4().simple().to_string(),
            txn: AtomicU64::new(0),
        })
    }

    /// Reuses the users and rooms of an earlier run against the same
    /// database (`state.json`, removed by the setup script), so a re-run
    /// skips seeding the history room.
    async fn load_or_populate(&self, http: &reqwest::Client) -> anyhow::Result<State> {
        let path = format!("{}/state.json", self.dir);
        if let Some(st) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| v["history"] == self.history)
            .and_then(|v| State::from_json(&v))
        {
            if st.users.len() >= self.members.max(2 * SEND_ROOMS) {
                eprintln!("==> peer: reusing the Matrix users and rooms in {path}");
                return Ok(st);
            }
        }
        let st = self.populate(http).await?;
        let mut saved = st.to_json();
        saved["history"] = self.history.into();
        std::fs::write(&path, saved.to_string())?;
        Ok(st)
    }

    async fn populate(&self, http: &reqwest::Client) -> anyhow::Result<State> {
        let base = &self.base;
        let n = self.members.max(2 * SEND_ROOMS);
        let prefix = format!("b{}", &Uuid::new_v4().simple().to_string()[..8]);
        eprintln!("==> peer: registering {n} Matrix users ({prefix}…)");
        let users: Vec<(String, String)> = stream::iter(0..n)
            .map(|i| {
                let body = json!({"username": format!("{prefix}u{i}"), "password": "bench-password",
                                  "auth": {"type": "m.login.dummy"}});
                post(
                    http,
                    format!("{base}/_matrix/client/v3/register"),
                    None,
                    body,
                )
            })
            .buffered(8)
            .map(|r| {
                let v = r?;
                Ok((str_of(&v, "user_id")?, str_of(&v, "access_token")?))
            })
            .collect::<Vec<anyhow::Result<_>>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        eprintln!("==> peer: creating {SEND_ROOMS} two-member rooms");
        let pair_room = |a: usize, b: usize| {
            let users = &users;
            async move {
                let invitee = &users[b].0;
                let body = json!({"preset": "private_chat", "invite": [invitee]});
                let room = str_of(
                    &post(
                        http,
                        format!("{base}/_matrix/client/v3/createRoom"),
                        Some(&users[a].1),
                        body,
                    )
                    .await?,
                    "room_id",
                )?;
                join(http, base, &users[b].1, &room).await?;
                anyhow::Ok(room)
            }
        };
        let send_rooms: Vec<String> = stream::iter(0..SEND_ROOMS)
            .map(|k| pair_room(2 * k, 2 * k + 1))
            .buffered(4)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        eprintln!("==> peer: creating the {}-member room", self.members);
        let body = json!({"preset": "public_chat"});
        let fan_room = str_of(
            &post(
                http,
                format!("{base}/_matrix/client/v3/createRoom"),
                Some(&users[0].1),
                body,
            )
            .await?,
            "room_id",
        )?;
        // One join at a time: concurrent events in one room leave forward
        // extremities that every later event of the room pays for.
        stream::iter(1..self.members)
            .map(|i| join(http, base, &users[i].1, &fan_room))
            .buffered(1)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        let hist_room = pair_room(0, 1).await?;
        let deep_from = self.seed_history(http, &users[0].1, &hist_room).await?;
        Ok(State {
            users,
            send_rooms,
            fan_room,
            hist_room,
            deep_from,
        })
    }

    /// Sends the history room's messages through the API (Synapse has no
    /// bulk import) and returns a `/messages` token 90 % back, from
    /// `/context` of the message at that point. One at a time, as one
    /// conversation is written: with 32 in flight each event was created
    /// beside the others and the room had 5,175 forward extremities after
    /// 10,000 messages (seeding slowed from 40 to 12 messages/s, and every
    /// later send and page paid for them).
    async fn seed_history(
        &self,
        http: &reqwest::Client,
        tok: &str,
        room: &str,
    ) -> anyhow::Result<String> {
        let base = &self.base;
        let t0 = Instant::now();
        eprintln!("==> peer: seeding {} Matrix messages", self.history);
        let mark = (self.history / 10) as usize;
        let ids: Vec<anyhow::Result<String>> = stream::iter(0..self.history)
            .map(|i| {
                let url =
                    format!("{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/seed{i}");
                async move {
                    if i % 2000 == 0 {
                        eprintln!("    {i} sent, {:.0} s", t0.elapsed().as_secs_f64());
                    }
                    let body =
                        json!({"msgtype": "m.text", "body": format!("hello from the bench {i}")});
                    let r = http.put(url).bearer_auth(tok).json(&body).send().await?;
                    str_of(&r.error_for_status()?.json().await?, "event_id")
                }
            })
            .buffered(1)
            .collect()
            .await;
        let failed = ids.iter().filter(|r| r.is_err()).count();
        eprintln!(
            "    seeded in {:.0} s ({failed} failed)",
            t0.elapsed().as_secs_f64()
        );
        let event = ids
            .into_iter()
            .nth(mark)
            .context("history seeding returned too few ids")??;
        let v: Value = http
            .get(format!(
                "{base}/_matrix/client/v3/rooms/{room}/context/{event}"
            ))
            .bearer_auth(tok)
            .query(&[("limit", "0")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        str_of(&v, "start")
    }
}

async fn post(
    http: &reqwest::Client,
    url: String,
    tok: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = http.post(&url).json(&body);
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

async fn join(http: &reqwest::Client, base: &str, tok: &str, room: &str) -> anyhow::Result<()> {
    post(
        http,
        format!("{base}/_matrix/client/v3/rooms/{room}/join"),
        Some(tok),
        json!({}),
    )
    .await?;
    Ok(())
}

fn str_of(v: &Value, k: &str) -> anyhow::Result<String> {
    v[k].as_str()
        .map(str::to_string)
        .with_context(|| format!("no {k} in {v}"))
}

impl Synapse {
    pub(super) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn put_message(
        &self,
        http: &reqwest::Client,
        tok: &str,
        room: &str,
        body: &str,
    ) -> reqwest::RequestBuilder {
        let txn = self.txn.fetch_add(1, Ordering::Relaxed);
        let url = format!(
            "{}/_matrix/client/v3/rooms/{room}/send/m.room.message/{}-{txn}",
            self.base, self.nonce
        );
        http.put(url)
            .bearer_auth(tok)
            .json(&json!({"msgtype": "m.text", "body": body}))
    }
}

/// One member's long-poll loop: an initial `/sync`, then `since` tokens.
async fn sync_loop(
    http: reqwest::Client,
    base: String,
    tok: String,
    room: String,
    ready: tokio::sync::mpsc::Sender<anyhow::Result<()>>,
    tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
) {
    let url = format!("{base}/_matrix/client/v3/sync");
    let first = async {
        let r = http
            .get(&url)
            .bearer_auth(&tok)
            .query(&[("timeout", "0"), ("filter", INIT_FILTER)])
            .send()
            .await?
            .error_for_status()?;
        str_of(&r.json().await?, "next_batch")
    };
    let mut since = match first.await {
        Ok(s) => {
            let _ = ready.send(Ok(())).await;
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e)).await;
            return;
        }
    };
    loop {
        let r = http
            .get(&url)
            .bearer_auth(&tok)
            .query(&[
                ("since", since.as_str()),
                ("timeout", "30000"),
                ("filter", SYNC_FILTER),
            ])
            .send()
            .await;
        let Ok(Ok(v)) = (match r {
            Ok(r) => Ok(r.json::<Value>().await),
            Err(e) => Err(e),
        }) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let now = Instant::now();
        if let Some(events) = v["rooms"]["join"][&room]["timeline"]["events"].as_array() {
            for e in events {
                if e["type"] == "m.room.message" {
                    if let Some(id) = e["event_id"].as_str() {
                        let _ = tx.send((id.to_string(), now));
                    }
                }
            }
        }
        if let Some(s) = v["next_batch"].as_str() {
            since = s.to_string();
        }
    }
}

impl Side for Synapse {
    fn name(&self) -> &'static str {
        "Synapse"
    }
    fn pid(&self) -> u32 {
        self.pid
    }
    fn db(&self) -> &str {
        "synapse_bench"
    }
    fn send(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        let k = i as usize % self.st.send_rooms.len();
        let tok = &self.st.users[2 * k + (i as usize / self.st.send_rooms.len()) % 2].1;
        self.put_message(http, tok, &self.st.send_rooms[k], "hello from the bench")
    }
    fn sent_id(&self, body: &Value) -> Option<String> {
        Some(body["event_id"].as_str()?.to_string())
    }
    fn fan_send(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        let tok = &self.st.users[i as usize % self.members].1;
        self.put_message(http, tok, &self.st.fan_room, "fan-out")
    }
    fn listen<'a>(
        &'a self,
        _run: u32,
        tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> {
        Box::pin(async move {
            let (ready_tx, mut ready) = tokio::sync::mpsc::channel(self.members);
            let loops: Vec<_> = self.st.users[..self.members]
                .iter()
                .map(|(_, tok)| {
                    tokio::spawn(sync_loop(
                        self.http.clone(),
                        self.base.clone(),
                        tok.clone(),
                        self.st.fan_room.clone(),
                        ready_tx.clone(),
                        tx.clone(),
                    ))
                })
                .collect();
            for _ in 0..self.members {
                match tokio::time::timeout(Duration::from_secs(180), ready.recv()).await {
                    Ok(Some(Ok(()))) => {}
                    Ok(Some(Err(e))) => bail!("initial /sync: {e}"),
                    _ => bail!("initial /sync timed out"),
                }
            }
            Ok(loops)
        })
    }
    fn members(&self) -> u32 {
        self.members as u32
    }
    fn page(&self, http: &reqwest::Client, deep: bool) -> reqwest::RequestBuilder {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/messages",
            self.base, self.st.hist_room
        );
        let req = http.get(url).bearer_auth(&self.st.users[0].1).query(&[
            ("dir", "b"),
            ("limit", "50"),
            ("filter", PAGE_FILTER),
        ]);
        if deep {
            req.query(&[("from", self.st.deep_from.as_str())])
        } else {
            req
        }
    }
    fn between_requests(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
