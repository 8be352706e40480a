//! CHUNKING and BINARYMIME (RFC 3030) from a raw client: BDAT chunks taken as
//! they come (no dot-stuffing, no end marker), the same rules and limits as
//! DATA, and a session that stays in step whatever the client does wrong.
use super::*;

/// `BDAT <len>[ LAST]` followed by the chunk's octets.
fn bdat(chunk: &[u8], last: bool) -> Vec<u8> {
    let mut out = format!("BDAT {}{}\r\n", chunk.len(), if last { " LAST" } else { "" }).into_bytes();
    out.extend_from_slice(chunk);
    out
}

fn stored(server: &Server, index: usize) -> Vec<u8> {
    server.submit.messages()[index].data.inline().expect("inline").to_vec()
}

#[tokio::test]
async fn chunks_are_stored_as_sent_in_one_pipelined_write_and_answered_in_order() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    // A leading dot stays one dot (nothing is unstuffed), a chunk ends between CR and LF,
    // and a line that is only a dot ends nothing.
    let body = b"Subject: chunks\r\n\r\n.one dot\r\n.\r\nmore\r\n";
    let (first, second) = body.split_at(20);
    let mut write = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@local.test>\r\n".to_vec();
    write.extend(bdat(first, false));
    write.extend(bdat(second, true));
    write.extend_from_slice(b"NOOP\r\n");
    c.send_raw(&write).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "250 2.1.0 Sender OK");
    assert_eq!(c.read_reply().await.unwrap(), "250 2.1.5 Recipient OK");
    assert_eq!(c.read_reply().await.unwrap(), "250 2.0.0 20 octets received");
    assert_eq!(c.read_reply().await.unwrap(), "250 2.6.0 <1@mail.local.test> Queued mail for delivery");
    assert_eq!(c.read_reply().await.unwrap(), "250 2.0.0 OK", "the next command is found after the last chunk");
    let want = [received(1, "ESMTP").as_bytes(), body].concat();
    assert_eq!(stored(&server, 0), want);
    assert!(!server.submit.messages()[0].envelope.binary_mime);

    // An empty last chunk ends a message sent in earlier ones.
    c.send_raw(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@local.test>\r\n").await.unwrap();
    c.send_raw(&[bdat(b"Subject: x\r\n\r\nbody\r\n", false), bdat(b"", true)].concat()).await.unwrap();
    for want in ["250 2.1.0", "250 2.1.5", "250 2.0.0 20 octets", "250 2.6.0"] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    assert!(stored(&server, 1).ends_with(b"Subject: x\r\n\r\nbody\r\n"));
}

#[tokio::test]
async fn a_chunk_outside_a_transaction_is_read_and_discarded_never_run_as_commands() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    // The chunk holds what would be a whole transaction if it were read as commands.
    let hidden = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@local.test>\r\nDATA\r\n";
    c.send_raw(&bdat(hidden, true)).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "503 5.5.1 Need MAIL command");
    assert_eq!(c.cmd("NOOP").await.unwrap(), "250 2.0.0 OK");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await.unwrap(), "250 2.1.0 Sender OK");
    c.send_raw(&bdat(hidden, true)).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "503 5.5.1 No valid recipients");
    assert_eq!(c.cmd("NOOP").await.unwrap(), "250 2.0.0 OK");
    assert!(server.submit.messages().is_empty());
}

#[tokio::test]
async fn bad_chunks_fail_the_transaction_and_the_session_stays_in_step() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    let begin = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@local.test>\r\n";

    // A bare LF, NUL or bare CR: refused as DATA refuses them; a chunk after the refused
    // one has no transaction any more.
    for (bad, reply) in [
        (&b"a\nb\r\n"[..], "550 5.6.0 Bare CR or LF"),
        (b"a\0b\r\n", "550 5.6.0 NUL"),
        (b"a\rb\r\n", "550 5.6.0 Bare CR or LF"),
    ] {
        c.send_raw(&[&begin[..], &bdat(bad, false), &bdat(b"tail\r\n", true)].concat()).await.unwrap();
        expect(&c.read_reply().await.unwrap(), "250 2.1.0");
        expect(&c.read_reply().await.unwrap(), "250 2.1.5");
        expect(&c.read_reply().await.unwrap(), reply);
        assert_eq!(c.read_reply().await.unwrap(), "503 5.5.1 Need MAIL command");
    }
    // A CR as the last octet of the message.
    c.send_raw(&[&begin[..], &bdat(b"x\r\n\r", true)].concat()).await.unwrap();
    for want in ["250 2.1.0", "250 2.1.5", "550 5.6.0 Bare CR or LF"] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    // More than the size limit (10000) over several chunks.
    let half = vec![b'x'; 5001];
    c.send_raw(&[&begin[..], &bdat(&half, false), &bdat(&half, false), &bdat(b"\r\n", true)].concat()).await.unwrap();
    for want in ["250 2.1.0", "250 2.1.5", "250 2.0.0 5001 octets", "552 5.3.4", "503 5.5.1 Need MAIL"] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    // DATA after BDAT in one transaction.
    c.send_raw(&[&begin[..], &bdat(b"Subject: x\r\n", false)].concat()).await.unwrap();
    for want in ["250 2.1.0", "250 2.1.5", "250 2.0.0 12 octets"] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    assert_eq!(c.cmd("DATA").await.unwrap(), "503 5.5.1 DATA cannot follow BDAT in the same transaction");
    // RSET drops the chunks so far.
    assert_eq!(c.cmd("RSET").await.unwrap(), "250 2.0.0 Resetting");
    assert!(server.submit.messages().is_empty(), "nothing refused was stored");

    // No LAST before QUIT: nothing is stored.
    c.send_raw(&[&begin[..], &bdat(b"Subject: never\r\n", false)].concat()).await.unwrap();
    for want in ["250 2.1.0", "250 2.1.5", "250 2.0.0 16 octets"] {
        expect(&c.read_reply().await.unwrap(), want);
    }
    expect(&c.cmd("QUIT").await.unwrap(), "221 2.0.0");
    assert!(server.submit.messages().is_empty());
    server.good_message_still_accepted("after-bad-chunks").await;
}

#[tokio::test]
async fn a_chunk_size_that_cannot_be_read_closes_the_session() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    expect(&c.cmd("MAIL FROM:<alice@example.org>").await.unwrap(), "250");
    expect(&c.cmd("RCPT TO:<bob@local.test>").await.unwrap(), "250");
    // Where would its octets end? Reading them as commands could run what they hold.
    assert_eq!(
        c.cmd("BDAT twelve LAST").await.unwrap(),
        "421 4.5.4 Syntax: BDAT <chunk-size> [LAST]; the chunk cannot be found, closing the connection"
    );
    assert_eq!(c.read_to_end().await.unwrap(), "");
    assert!(server.submit.messages().is_empty());
}

#[tokio::test]
async fn binarymime_takes_any_octet_and_only_with_bdat() {
    let server = start(settings()).await;
    let mut c = server.session().await;
    let begin = b"MAIL FROM:<alice@example.org> BODY=BINARYMIME\r\nRCPT TO:<bob@local.test>\r\n";
    c.send_raw(begin).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.1.0");
    expect(&c.read_reply().await.unwrap(), "250 2.1.5");
    assert_eq!(c.cmd("DATA").await.unwrap(), "503 5.5.1 BODY=BINARYMIME data must be sent with BDAT");
    let body = b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\n\r.\r\n\x00";
    c.send_raw(&bdat(body, true)).await.unwrap();
    expect(&c.read_reply().await.unwrap(), "250 2.6.0");
    let m = &server.submit.messages()[0];
    assert!(m.envelope.binary_mime && m.envelope.body_8bit);
    assert!(stored(&server, 0).ends_with(body));
}

#[tokio::test]
async fn a_connector_with_chunking_off_offers_neither_and_discards_a_chunk_sent_anyway() {
    let mut s = settings();
    s.settings.chunking_enabled = Some(false);
    let server = start(s).await;
    let (mut c, _) = AsyncSmtpClient::connect(server.addr).await.unwrap();
    let ehlo = c.cmd("EHLO client.test").await.unwrap();
    assert!(!ehlo.contains("CHUNKING") && !ehlo.contains("BINARYMIME"), "{ehlo}");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> BODY=BINARYMIME").await.unwrap(),
        "555 5.5.4 Unsupported parameter BODY=BINARYMIME"
    );
    expect(&c.cmd("MAIL FROM:<alice@example.org>").await.unwrap(), "250");
    expect(&c.cmd("RCPT TO:<bob@local.test>").await.unwrap(), "250");
    c.send_raw(&bdat(b"NOOP\r\n", true)).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), "502 5.5.1 BDAT is not offered here");
    assert_eq!(c.cmd("NOOP").await.unwrap(), "250 2.0.0 OK");
    assert!(server.submit.messages().is_empty());
}
