//! Messages in the format of the wikimon websocket feed (hatnote's parser of
//! Wikipedia's IRC recent-changes channel), with the same fields, in the same
//! form, as the real ones in the corpus
//! (`wikimedia/wikimon_newuser_examples.jsonl`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

static NEXT_REV: AtomicU64 = AtomicU64::new(601_700_000);

/// An edit of `title` in namespace `ns` ("Main" for articles) changing the
/// page by `change_size` bytes, by a registered, non-bot user, as JSON text.
pub fn wikimon_edit(title: &str, change_size: i64, ns: &str) -> String {
    wikimon_edit_value(title, change_size, ns).to_string()
}

/// [`wikimon_edit`] as a JSON value, to change a field (`is_bot`, `is_anon`,
/// `is_minor`, `action`, ...) before sending it.
pub fn wikimon_edit_value(title: &str, change_size: i64, ns: &str) -> Value {
    let rev = NEXT_REV.fetch_add(1, Ordering::Relaxed);
    json!({
        "action": "edit",
        "change_size": change_size,
        "flags": null,
        "hashtags": [],
        "is_anon": false,
        "is_bot": false,
        "is_minor": false,
        "is_new": false,
        "is_unpatrolled": false,
        "mentions": [],
        "ns": ns,
        "page_title": title,
        "parent_rev_id": (rev - 1).to_string(),
        "parsed_summary": "copyedit",
        "rev_id": rev.to_string(),
        "section": "",
        "summary": "copyedit",
        "url": format!("http://en.wikipedia.org/w/index.php?diff={rev}&oldid={}", rev - 1),
        "user": "Carillon tester",
    })
}

/// A new account named `user`, as wikimon reports it (`page_title`
/// "Special:Log/newusers", `change_size` null, no `url`), as JSON text.
pub fn wikimon_newuser(user: &str) -> String {
    wikimon_newuser_value(user).to_string()
}

/// [`wikimon_newuser`] as a JSON value.
pub fn wikimon_newuser_value(user: &str) -> Value {
    json!({
        "action": "create",
        "change_size": null,
        "flags": null,
        "hashtags": [],
        "is_anon": false,
        "is_bot": false,
        "is_minor": false,
        "is_new": false,
        "is_unpatrolled": false,
        "mentions": [],
        "ns": "Special",
        "page_title": "Special:Log/newusers",
        "parsed_summary": "new user account",
        "section": "",
        "summary": "new user account",
        "user": user,
    })
}
