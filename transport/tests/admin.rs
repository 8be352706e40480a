//! Server control end to end (docs/design.md §3, §8): ServerState transitions and what
//! real SMTP clients see, component states with their requesters, every queue
//! and message action of the admin API with its refusals, Redirect-Message to
//! a second server, the token, reloads, the replay directory, poison messages,
//! metrics, and transportctl's output.

use crate::support::*;
use std::process::Command;
use std::time::Duration;
use transport::api::{MessageStatus, QueueStatus, ServerStateName};
use transport::client::{ClientError, MessageAction, QueueAction};
use transport::config::{Component, ComponentState, Requester, ServerStateSetting, TimeSpan, TransportFile};

fn with_admin(setup: TransportSetup) -> TransportProcess {
    start_transport(&TransportSetup { admin: true, ..setup })
}

fn session(addr: std::net::SocketAddr) -> SmtpClient {
    let (mut c, banner) = SmtpClient::connect(addr).expect("connect");
    assert!(banner.starts_with("220 "), "{banner}");
    assert!(c.cmd("EHLO client.test").unwrap().starts_with("250"));
    c
}

fn send(addr: std::net::SocketAddr, from: &str, to: &str, tag: &str) -> String {
    let mut c = session(addr);
    let reply = c.send_message(from, &[to], &test_message(tag, 2)).expect("send");
    let _ = c.cmd("QUIT");
    reply
}

fn state(t: &TransportProcess) -> (ServerStateName, u8) {
    let info = t.admin(|c| async move { c.server().await }).expect("GET /v1/server");
    (info.server_state.name, info.server_state.code)
}

fn set_state(t: &TransportProcess, s: ServerStateSetting) {
    t.admin(|c| async move { c.set_server_state(s).await }).expect("PUT /v1/server/state");
}

fn ready(t: &TransportProcess) -> bool {
    t.admin(|c| async move { c.ready().await }).expect("GET /readyz")
}

#[test]
fn pause_keeps_open_sessions_and_delivery_stop_halts_both() {
    let sink = Sink::start();
    let t = with_admin(TransportSetup { smart_host: Some(sink.addr), ..Default::default() });
    assert_eq!(state(&t), (ServerStateName::Started, 2));
    let mut open = session(t.smtp);

    set_state(&t, ServerStateSetting::Paused);
    assert_eq!(state(&t), (ServerStateName::Paused, 6));
    assert!(!ready(&t), "/readyz fails while Paused");
    // A new connection is refused...
    let (mut fresh, banner) = SmtpClient::connect(t.smtp).expect("connect");
    assert!(banner.starts_with("421 4.3.2"), "{banner}");
    assert_eq!(fresh.read_to_end(), "");
    // ...the open session still submits, and the message is delivered.
    let reply = open.send_message("a@example.org", &["b@example.net"], &test_message("paused", 1)).unwrap();
    assert!(reply.starts_with("250 2.6.0"), "{reply}");
    sink.wait_for(1, Duration::from_secs(20));

    set_state(&t, ServerStateSetting::Started);
    assert_eq!(state(&t), (ServerStateName::Started, 2));
    assert!(send(t.smtp, "a@example.org", "b@example.net", "continued").starts_with("250"));
    sink.wait_for(2, Duration::from_secs(20));
    drop(open);

    set_state(&t, ServerStateSetting::Stopped);
    eventually(Duration::from_secs(10), "Stopped", || (state(&t) == (ServerStateName::Stopped, 4)).then_some(()));
    let (_, banner) = SmtpClient::connect(t.smtp).expect("connect");
    assert!(banner.starts_with("421 4.3.2"), "{banner}");
}

#[test]
fn stopped_server_delivers_nothing_until_started() {
    let port = free_port();
    let t = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_secs(1))),
        ..Default::default()
    });
    assert!(send(t.smtp, "a@example.org", "b@example.net", "held").starts_with("250"));
    // The hop is down: the queue goes into Retry.
    eventually(Duration::from_secs(10), "queue in Retry", || {
        let queues = t.admin(|c| async move { c.queues().await }).ok()?;
        queues.iter().any(|q| q.status == QueueStatus::Retry).then_some(())
    });
    set_state(&t, ServerStateSetting::Stopped);
    eventually(Duration::from_secs(10), "Stopped", || (state(&t).1 == 4).then_some(()));
    let sink = Sink::start_on(port, &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(sink.messages().is_empty(), "nothing is delivered while Stopped");
    set_state(&t, ServerStateSetting::Started);
    sink.wait_for(1, Duration::from_secs(20));
}

#[test]
fn hub_transport_inactive_and_draining_by_requester() {
    let swaks = tool("swaks", "swaks");
    let sink = Sink::start();
    let t = with_admin(TransportSetup { smart_host: Some(sink.addr), ..Default::default() });
    let set = |r: Requester, s: ComponentState| {
        t.admin(|c| async move { c.set_component(Component::HubTransport, r, s).await }).expect("set component")
    };
    let info = set(Requester::Maintenance, ComponentState::Inactive);
    let hub = info.components.iter().find(|c| c.component == Component::HubTransport).unwrap();
    assert_eq!(hub.state, ComponentState::Inactive);
    assert!(!ready(&t));
    let out = Command::new(&swaks)
        .args(["--server", &t.smtp.to_string(), "--from", "a@example.org", "--to", "b@example.net"])
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(transcript.contains("<** 421 4.3.2 Service not active"), "{transcript}");
    assert!(transcript.contains("250"), "banner and EHLO still work: {transcript}");

    // Functional cannot clear Maintenance's Inactive.
    let info = set(Requester::Functional, ComponentState::Active);
    assert_eq!(
        info.components.iter().find(|c| c.component == Component::HubTransport).unwrap().state,
        ComponentState::Inactive
    );
    let info = set(Requester::Maintenance, ComponentState::Active);
    assert_eq!(
        info.components.iter().find(|c| c.component == Component::HubTransport).unwrap().state,
        ComponentState::Active
    );
    assert!(ready(&t));
    assert!(send(t.smtp, "a@example.org", "b@example.net", "active-again").starts_with("250"));
    sink.wait_for(1, Duration::from_secs(20));

    // Draining: the queue is delivered, new mail refused, readyz follows.
    set(Requester::Maintenance, ComponentState::Draining);
    assert!(!ready(&t));
    let refused = send(t.smtp, "a@example.org", "b@example.net", "while-draining");
    assert!(refused.starts_with("421 4.3.2"), "{refused}");
    set(Requester::Maintenance, ComponentState::Active);
    assert!(ready(&t));
}

#[test]
fn draining_delivers_what_is_queued() {
    let port = free_port();
    let t = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_secs(1))),
        ..Default::default()
    });
    for i in 0..5 {
        assert!(send(t.smtp, "a@example.org", "b@example.net", &format!("queued-{i}")).starts_with("250"));
    }
    t.admin(|c| async move {
        c.set_component(Component::HubTransport, Requester::Maintenance, ComponentState::Draining).await
    })
    .unwrap();
    let sink = Sink::start_on(port, &[]);
    sink.wait_for(5, Duration::from_secs(30));
    eventually(Duration::from_secs(10), "empty queue", || {
        let info = t.admin(|c| async move { c.server().await }).ok()?;
        (info.totals.messages == 0).then_some(())
    });
}

#[test]
fn queue_and_message_actions_with_their_refusals() {
    let port = free_port();
    let mailbox = Sink::start();
    let t = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        mailbox: Some(mailbox.addr),
        edit: edit(|f| {
            f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_hours(1));
            f.retry.queue_glitch_retry_count = Some(4);
        }),
        ..Default::default()
    });
    for tag in ["one", "two", "three"] {
        assert!(send(t.smtp, "alice@local.test", "b@example.net", tag).starts_with("250"));
    }
    let queue = eventually(Duration::from_secs(10), "queue in Retry", || {
        let queues = t.admin(|c| async move { c.queues().await }).ok()?;
        queues.into_iter().find(|q| q.status == QueueStatus::Retry && q.message_count == 3)
    });
    assert!(queue.identity.starts_with("test-0\\"), "{}", queue.identity);
    assert!(queue.next_retry_time.is_some() && queue.last_error.is_some(), "{queue:?}");
    let id = queue.id.clone();

    // Refusals.
    let err = |r: Result<(), ClientError>| match r {
        Err(ClientError::Refused(m)) => m,
        other => panic!("expected a 409, got {other:?}"),
    };
    let m = err(t.admin(|c| async move { c.queue_action("Submission", QueueAction::Retry).await }));
    assert!(m.contains("Submission"), "{m}");
    let m = err(t.admin(|c| async move { c.queue_action("Unreachable", QueueAction::Retry).await }));
    assert!(m.contains("--resubmit"), "{m}");
    let m = err(t.admin({
        let id = id.clone();
        |c| async move { c.queue_action(&id, QueueAction::Resume).await }
    }));
    assert!(m.contains("not suspended"), "{m}");
    assert!(matches!(
        t.admin(|c| async move { c.queue_action("999", QueueAction::Suspend).await }),
        Err(ClientError::NotFound(_))
    ));

    // Suspend-Queue / Resume-Queue.
    t.admin({
        let id = id.clone();
        |c| async move { c.queue_action(&id, QueueAction::Suspend).await }
    })
    .unwrap();
    let queues = t.admin(|c| async move { c.queues().await }).unwrap();
    assert_eq!(queues.iter().find(|q| q.id == id).unwrap().status, QueueStatus::Suspended);
    let m = err(t.admin({
        let id = id.clone();
        |c| async move { c.queue_action(&id, QueueAction::Suspend).await }
    }));
    assert!(m.contains("already suspended"), "{m}");
    t.admin({
        let id = id.clone();
        |c| async move { c.queue_action(&id, QueueAction::Resume).await }
    })
    .unwrap();

    // Messages.
    let messages = t
        .admin({
            let id = id.clone();
            |c| async move { c.messages(Some(&id)).await }
        })
        .unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m.status == MessageStatus::Retry), "{messages:?}");
    let (first, second, third) = (messages[0].id, messages[1].id, messages[2].id);
    let m = err(t.admin(move |c| async move { c.export_message(first).await.map(|_| ()) }));
    assert!(m.contains("not suspended"), "{m}");
    let m = err(t.admin(move |c| async move { c.message_action(first, MessageAction::Resume).await }));
    assert!(m.contains("not suspended"), "{m}");
    t.admin(move |c| async move { c.message_action(first, MessageAction::Suspend).await }).unwrap();
    let exported = t.admin(move |c| async move { c.export_message(first).await }).unwrap();
    let text = String::from_utf8_lossy(&exported);
    assert!(text.starts_with("Received: "), "{text}");
    assert!(
        text.contains("Message-ID: <one@test.invalid>")
            || text.contains("Message-ID: <two@test.invalid>")
            || text.contains("Message-ID: <three@test.invalid>")
    );
    let listed = t.admin(move |c| async move { c.messages(None).await }).unwrap();
    assert_eq!(listed.iter().find(|m| m.id == first).unwrap().status, MessageStatus::Suspended);
    t.admin(move |c| async move { c.message_action(first, MessageAction::Resume).await }).unwrap();

    // Remove-Message with an NDR: the NDR reaches alice's mailbox hop; without: nothing.
    t.admin(move |c| async move { c.message_action(second, MessageAction::Remove { with_ndr: true }).await }).unwrap();
    let ndr = mailbox.wait_for(1, Duration::from_secs(20));
    assert!(ndr[0].mail_args.starts_with("<>"), "{:?}", ndr[0].mail_args);
    assert!(ndr[0].content.contains("Action: failed"), "{}", ndr[0].content);
    t.admin(move |c| async move { c.message_action(third, MessageAction::Remove { with_ndr: false }).await }).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mailbox.messages().len(), 1, "no NDR without --with-ndr");
    assert!(matches!(
        t.admin(move |c| async move { c.message_action(third, MessageAction::Suspend).await }),
        Err(ClientError::NotFound(_))
    ));

    // Retry-Queue: the hop comes up; the manual retry replaces the hour-long wait.
    let sink = Sink::start_on(port, &[]);
    t.admin({
        let id = id.clone();
        |c| async move { c.queue_action(&id, QueueAction::Retry).await }
    })
    .unwrap();
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "only the remaining message");
}

#[test]
fn redirect_message_moves_500_queued_messages_to_another_server() {
    let source_tool = tool("smtp-source", "postfix");
    let sink = Sink::start();
    let target = start_transport(&TransportSetup { smart_host: Some(sink.addr), ..Default::default() });
    let dead = free_port();
    let a = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{dead}").parse().unwrap()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_hours(1))),
        ..Default::default()
    });
    let out = Command::new(source_tool)
        .args(["-s", "10", "-m", "500", "-l", "1024", "-f", "load@example.org", "-t", "far@example.net"])
        .arg(a.smtp.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(Duration::from_secs(30), "500 queued", || {
        let info = a.admin(|c| async move { c.server().await }).ok()?;
        (info.totals.messages == 500).then_some(())
    });
    let target_addr = target.smtp.to_string();
    let info = a.admin(|c| async move { c.redirect(&target_addr).await }).unwrap();
    assert!(!info.accepting_mail, "no new mail while redirecting");
    let got = sink.wait_for(500, Duration::from_secs(120));
    assert_eq!(got.len(), 500, "none lost");
    eventually(Duration::from_secs(30), "nothing left behind", || {
        let info = a.admin(|c| async move { c.server().await }).ok()?;
        (info.totals.messages == 0 && info.redirect.is_none()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 500, "and none twice");
}

#[test]
fn admin_api_needs_the_token() {
    let sink = Sink::start();
    let t = with_admin(TransportSetup {
        smart_host: Some(sink.addr),
        token: Some("s3cret-token".into()),
        ..Default::default()
    });
    assert_eq!(state(&t).1, 2, "the right token works");
    let addr = t.admin.unwrap();
    let anonymous = block_on(async move {
        transport::client::AdminClient::new(&format!("http://{addr}"), None).unwrap().server().await
    });
    assert!(matches!(anonymous, Err(ClientError::Unauthorized)), "{anonymous:?}");
    let wrong = block_on(async move {
        transport::client::AdminClient::new(&format!("http://{addr}"), Some("s3cret-tokeN".into()))
            .unwrap()
            .server()
            .await
    });
    assert!(matches!(wrong, Err(ClientError::Unauthorized)), "{wrong:?}");
    // Probes stay open for kubelet.
    assert!(block_on(async move {
        transport::client::AdminClient::new(&format!("http://{addr}"), None).unwrap().ready().await
    })
    .unwrap());
}

#[test]
fn reload_changes_the_retry_interval_of_a_queue_already_in_retry() {
    let port = free_port();
    let hop: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let retry = edit(|f| {
        f.retry.queue_glitch_retry_count = Some(0);
        f.retry.transient_failure_retry_count = Some(0);
        f.retry.outbound_connection_failure_retry_interval = Some(TimeSpan::from_hours(1));
    });
    let t = with_admin(TransportSetup { smart_host: Some(hop), edit: retry, ..Default::default() });
    assert!(send(t.smtp, "a@example.org", "b@example.net", "reload").starts_with("250"));
    let before = eventually(Duration::from_secs(10), "queue in Retry", || {
        let queues = t.admin(|c| async move { c.queues().await }).ok()?;
        queues.into_iter().find(|q| q.status == QueueStatus::Retry)
    });
    let revision = t.admin(|c| async move { c.server().await }).unwrap().config_revision;
    t.edit_config(|f| f.retry.outbound_connection_failure_retry_interval = Some(TimeSpan::from_secs(2)));
    // The file watcher applies it; the queue's next attempt moves to 2 s after the last.
    let after = eventually(Duration::from_secs(15), "the new interval applied", || {
        let queues = t.admin(|c| async move { c.queues().await }).ok()?;
        let q = queues.into_iter().find(|q| q.id == before.id)?;
        (q.retry_count > before.retry_count).then_some(q)
    });
    assert!(after.retry_count >= 2);
    let info = t.admin(|c| async move { c.server().await }).unwrap();
    assert_ne!(info.config_revision, revision, "the new revision is reported");
    assert!(!info.restart_required);
    // Nothing restarted: the same process, the same queue identity.
    assert_eq!(after.identity, before.identity);
}

#[test]
fn a_listener_change_is_reported_as_restart_required_and_an_invalid_file_is_refused() {
    let sink = Sink::start();
    let t = with_admin(TransportSetup { smart_host: Some(sink.addr), ..Default::default() });
    let mut moved = TransportFile::from_yaml_str(&std::fs::read_to_string(&t.config_path).unwrap()).unwrap();
    // Out of range (1 to 10): the whole file is refused.
    t.edit_config(|f| f.retry.poison_threshold = Some(99));
    std::thread::sleep(Duration::from_secs(4));
    assert!(t.log().contains("invalid"), "the invalid file is refused: {}", t.log());
    assert_eq!(state(&t).1, 2, "still running the old config");
    let new_port = free_port();
    moved.receive_connectors[0].bind.set_port(new_port);
    write_config_file(&t.config_path, &moved);
    eventually(Duration::from_secs(15), "restartRequired", || {
        t.admin(|c| async move { c.server().await }).ok()?.restart_required.then_some(())
    });
    assert!(
        send(t.smtp, "a@example.org", "b@example.net", "old-port").starts_with("250"),
        "the old listener still serves"
    );
}

#[test]
fn replay_directory_submits_eml_files_and_renames_bad_ones() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let replay = dir.path().join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    let t = with_admin(TransportSetup {
        smart_host: Some(sink.addr),
        edit: {
            let replay = replay.clone();
            edit(move |f| f.replay_directory = Some(replay.clone()))
        },
        ..Default::default()
    });
    std::fs::write(
        replay.join("good.eml"),
        "X-Sender: <replayed@example.org>\nX-Receiver: <dest@example.net>\nX-EndOfInjectedXHeaders: x\n\
         Subject: replayed\nMessage-ID: <replayed@test.invalid>\n\nfrom the replay directory\n",
    )
    .unwrap();
    std::fs::write(replay.join("broken.eml"), "Subject: no envelope\n\nbody\n").unwrap();
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert!(got[0].mail_args.starts_with("<replayed@example.org>"), "{}", got[0].mail_args);
    assert!(got[0].rcpt_args.iter().any(|r| r.starts_with("<dest@example.net>")));
    eventually(Duration::from_secs(15), "broken.bad", || replay.join("broken.bad").exists().then_some(()));
    assert!(!replay.join("good.eml").exists() && !replay.join("good.tmp").exists());
    let _ = t;
}

#[test]
fn a_message_that_crashes_processing_twice_goes_to_poison_and_can_be_exported() {
    let sink = Sink::start();
    let t = with_admin(TransportSetup {
        smart_host: Some(sink.addr),
        edit: edit(|f| f.retry.message_retry_interval = Some(TimeSpan::from_secs(1))),
        ..Default::default()
    });
    let mut c = session(t.smtp);
    let poison = "Subject: poison\r\nX-Kube-Transport-Test: panic\r\nMessage-ID: <poison@test.invalid>\r\n\r\nboom";
    assert!(c.send_message("a@example.org", &["b@example.net"], poison).unwrap().starts_with("250"));
    assert!(c
        .send_message("a@example.org", &["b@example.net"], &test_message("healthy", 1))
        .unwrap()
        .starts_with("250"));
    sink.wait_for(1, Duration::from_secs(20));
    let poisoned = eventually(Duration::from_secs(20), "the Poison queue", || {
        let queues = t.admin(|c| async move { c.queues().await }).ok()?;
        queues.into_iter().find(|q| q.id == "Poison" && q.message_count == 1)
    });
    assert_eq!(poisoned.identity, "test-0\\Poison");
    let messages = t.admin(|c| async move { c.messages(Some("Poison")).await }).unwrap();
    assert_eq!(messages[0].status, MessageStatus::Suspended);
    assert!(messages[0].expiration_time.is_none(), "poison messages never expire");
    let id = messages[0].id;
    let bytes = t.admin(move |c| async move { c.export_message(id).await }).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("<poison@test.invalid>"));
    assert!(t.log().contains("10001"), "event 10001 logged");
    // The server kept working: the healthy message was delivered, the server is up.
    assert_eq!(state(&t).1, 2);
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn metrics_count_what_happened() {
    let sink = Sink::start();
    let t = with_admin(TransportSetup { smart_host: Some(sink.addr), ..Default::default() });
    assert!(send(t.smtp, "a@example.org", "b@example.net", "counted").starts_with("250"));
    sink.wait_for(1, Duration::from_secs(20));
    let addr = t.admin.unwrap();
    let text =
        block_on(async move { reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap() });
    assert!(text.contains("transport_messages_received_total{connector=\"Default\"} 1"), "{text}");
    assert!(
        text.contains("transport_recipients_delivered_total{delivery_type=\"SmartHostConnectorDelivery\"} 1"),
        "{text}"
    );
    assert!(text.contains("transport_server_state 2"), "{text}");
    assert!(text.contains("transport_component_state{component=\"HubTransport\"} 0"), "{text}");
    // Delivered and its removal committed: nothing left that a restart would recover.
    t.wait_store_empty(Duration::from_secs(10));
}

#[test]
fn stored_messages_metric_counts_what_a_restart_recovers() {
    let port = free_port();
    let t = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_hours(1))),
        ..Default::default()
    });
    assert_eq!(t.metric("transport_queue_stored_messages"), Some(0.0));
    for i in 0..3 {
        assert!(send(t.smtp, "a@example.org", "b@example.net", &format!("held-{i}")).starts_with("250"));
    }
    // Each 250 came after its commit, so the count is there at once.
    assert_eq!(t.metric("transport_queue_stored_messages"), Some(3.0));
}

#[test]
fn transportctl_speaks_exchange() {
    let port = free_port();
    let t = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        token: Some("ctl-token".into()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_hours(1))),
        ..Default::default()
    });
    let token_file = t.dir.join("token");
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_transportctl"))
            .arg("--admin")
            .arg(format!("http://{}", t.admin.unwrap()))
            .arg("--token-file")
            .arg(&token_file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, _) = ctl(&["get-serverstate"]);
    assert!(ok && out.contains("Started") && out.contains("ServerState"), "{out}");
    assert!(send(t.smtp, "a@example.org", "b@example.net", "ctl").starts_with("250"));
    let queue = eventually(Duration::from_secs(10), "a queue in Retry", || {
        let (_, out, _) = ctl(&["get-queue", "-o", "json"]);
        let queues: Vec<transport::api::QueueInfo> = serde_json::from_str(&out).ok()?;
        queues.into_iter().find(|q| q.status == QueueStatus::Retry)
    });
    let (ok, out, _) = ctl(&["get-queue"]);
    assert!(ok && out.contains("Identity") && out.contains("Retry") && out.contains(&queue.identity), "{out}");
    let (ok, _, err) = ctl(&["resume-queue", &queue.id]);
    assert!(!ok && err.contains("not suspended"), "a refusal says why: {err}");
    let (ok, out, _) = ctl(&[
        "set-servercomponentstate",
        "--component",
        "HubTransport",
        "--requester",
        "Maintenance",
        "--state",
        "Draining",
    ]);
    assert!(ok && out.contains("Draining") && out.contains("Maintenance=Draining"), "{out}");
    let (ok, out, _) = ctl(&["get-message", "--queue", &queue.id]);
    assert!(ok && out.contains("a@example.org") && out.contains("Retry"), "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_transportctl"))
        .args(["--admin", &format!("http://{}", t.admin.unwrap()), "get-queue"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401"), "without the token: {err}");
}

/// Get-Message at scale: 1000 rows by default with a bookmark for the next page,
/// every message exactly once across the pages, Get-Message's filters, and bad
/// parameters refused with a 400 that names them.
#[test]
fn get_message_pages_with_a_bookmark_and_filters() {
    let port = free_port();
    let t = with_admin(TransportSetup {
        smart_host: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        edit: edit(|f| f.retry.queue_glitch_retry_interval = Some(TimeSpan::from_hours(1))),
        ..Default::default()
    });
    let source = tool("smtp-source", "postfix");
    let out = Command::new(source)
        .args(["-s", "10", "-m", "2400", "-l", "512", "-f", "bulk@example.org", "-t", "rcpt@example.net"])
        .arg(t.smtp.to_string())
        .output()
        .expect("smtp-source");
    assert!(out.status.success(), "smtp-source: {}", String::from_utf8_lossy(&out.stderr));
    for tag in ["a", "b", "c"] {
        assert!(send(t.smtp, "Alice@Example.org", "carol@other.test", tag).starts_with("250"));
    }
    let total = 2403;
    let page = |query: transport::api::MessageQuery| t.admin(|c| async move { c.message_page(&query).await });
    eventually(Duration::from_secs(30), "every message queued and in Retry", || {
        let all = t.admin(|c| async move { c.messages(None).await }).ok()?;
        (all.len() == total && all.iter().all(|m| m.status == MessageStatus::Retry)).then_some(())
    });

    // Pages of the default 1000, then the rest; none repeated, none missed, in order.
    let mut seen = Vec::new();
    let mut bookmark = None;
    let mut pages = Vec::new();
    loop {
        let query = transport::api::MessageQuery { bookmark: bookmark.clone(), ..Default::default() };
        let (rows, next) = page(query).expect("a page");
        pages.push(rows.len());
        seen.extend(rows.iter().map(|m| (m.queue.clone(), m.id)));
        match next {
            Some(next) => {
                assert_eq!(Some(&next), rows.last().map(|m| &m.identity), "the bookmark is the last row");
                bookmark = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, vec![1000, 1000, 403]);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|(q, id)| (q.parse::<u64>().unwrap_or(0), *id));
    sorted.dedup();
    assert_eq!((seen.len(), sorted.len()), (total, total), "every message once");

    // Filters: sender without regard to case, recipient domain, status, one message.
    let by = |query: transport::api::MessageQuery| page(query).expect("a filtered page");
    let (rows, next) =
        by(transport::api::MessageQuery { sender: Some("alice@example.ORG".into()), ..Default::default() });
    assert_eq!((rows.len(), next), (3, None));
    let (rows, _) =
        by(transport::api::MessageQuery { recipient_domain: Some("OTHER.test".into()), ..Default::default() });
    assert!(rows.len() == 3 && rows.iter().all(|m| m.recipients[0].address == "carol@other.test"), "{rows:?}");
    let size = transport::api::ResultSize::Rows(10);
    let (rows, next) = by(transport::api::MessageQuery {
        status: Some(MessageStatus::Retry),
        result_size: Some(size),
        ..Default::default()
    });
    assert_eq!(rows.len(), 10);
    assert!(next.is_some());
    let (rows, _) = by(transport::api::MessageQuery { status: Some(MessageStatus::Suspended), ..Default::default() });
    assert!(rows.is_empty());
    let one = seen[1500].1;
    let (rows, _) = by(transport::api::MessageQuery { id: Some(one), ..Default::default() });
    assert_eq!(rows.iter().map(|m| m.id).collect::<Vec<_>>(), vec![one]);

    // Bad parameters: a 400 that names them.
    let admin = t.admin.unwrap();
    let get = |query: &str| {
        block_on(async move {
            let r = reqwest::get(format!("http://{admin}/v1/messages?{query}")).await.expect("GET");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    let (code, body) = get("resultSize=0");
    assert!(code == 400 && body.contains("ResultSize"), "{code} {body}");
    let (code, body) = get("status=Sleeping");
    assert!(code == 400 && body.contains("status"), "{code} {body}");
    let (code, body) = get("bookmark=nonsense");
    assert!(code == 400 && body.contains("Bookmark"), "{code} {body}");

    // transportctl says when it shows only part, and how to see the rest.
    let out = Command::new(env!("CARGO_BIN_EXE_transportctl"))
        .args(["--admin", &format!("http://{admin}"), "get-message", "-o", "json", "--result-size", "5"])
        .output()
        .unwrap();
    let rows: Vec<transport::api::MessageInfo> = serde_json::from_slice(&out.stdout).expect("json rows");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(rows.len() == 5 && err.contains("--bookmark"), "{} rows; {err}", rows.len());
}
