//! The supervisor of a link: it watches the connection of the moment (its events, and its
//! status every second), follows `connection.blocked`, and when the connection is lost,
//! recovers it (or gives up) and goes on with the next one.

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use lapin::{Connection, Event};

use super::super::connect::Events;
use super::super::convert;
use super::{Link, Up};
use crate::status::ConnectionEvent;

/// The next event of a lapin connection; `None` once it has none left.
async fn next_event(events: &mut Events) -> Option<Event> {
    poll_fn(|cx| events.as_mut().poll_next(cx)).await
}

/// How often the supervisor looks at the connection's status besides its events.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Watches the connection of `epoch`; when it is lost, recovers (or fails) and goes on with
/// the next. Ends when the link is closed or dropped.
pub(super) async fn supervise(
    link: Weak<Link>,
    connection: Arc<Connection>,
    events: Events,
    epoch: u64,
) {
    let (mut connection, mut events, mut epoch) = (connection, events, epoch);
    loop {
        let Some(cause) = watch_until_lost(&link, &connection, &mut events, epoch).await else {
            return;
        };
        let Some(strong) = link.upgrade() else { return };
        strong.report_lost(epoch, cause, None);
        // A connection marked lost by a false alarm must not live on beside the new one.
        let old = connection.clone();
        let limit = strong.options.timeouts.get_operation();
        strong.runtime.spawn(async move {
            if old.status().connected() {
                let _ =
                    tokio::time::timeout(limit, old.close(320, "carrot: replaced".into())).await;
            }
        });
        if !strong.options.recovery || strong.is_closed() {
            return;
        }
        let lost_at = Instant::now();
        let outcome = tokio::select! {
            outcome = strong.reconnect() => outcome,
            _ = strong.closing.notified() => return,
        };
        match outcome {
            Ok((new, new_events, index, attempts)) => {
                if strong.is_closed() {
                    let _ = tokio::time::timeout(limit, new.close(200, "OK".into())).await;
                    return;
                }
                epoch += 1;
                strong.current.store(index, Ordering::Relaxed);
                strong.blocked.send_replace(None);
                strong.up.send_replace(Up::Connected {
                    connection: new.clone(),
                    epoch,
                });
                strong.publish_state();
                strong.hub.emit(ConnectionEvent::Recovered {
                    url: strong.endpoints[index].shown.clone(),
                    attempts,
                    downtime: lost_at.elapsed(),
                });
                connection = new;
                events = new_events;
            }
            Err(error) => {
                let cause = error.to_string();
                strong.up.send_replace(Up::Failed(Arc::new(error)));
                strong.publish_state();
                strong.hub.emit(ConnectionEvent::RecoveryFailed { cause });
                return;
            }
        }
    }
}

/// Waits until the connection of `epoch` is lost (its cause) or the link closes (`None`);
/// meanwhile follows `connection.blocked` / `unblocked`.
async fn watch_until_lost(
    link: &Weak<Link>,
    connection: &Connection,
    events: &mut Events,
    epoch: u64,
) -> Option<String> {
    let mut events_open = true;
    loop {
        let strong = link.upgrade()?;
        if strong.is_closed() {
            return None;
        }
        if strong.epoch() != Some(epoch) {
            // An operation reported the loss first.
            let cause = strong
                .cause
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Some(cause);
        }
        if !connection.status().connected() {
            return Some("the connection is no longer open".into());
        }
        // The link lives while the supervisor waits: its owner closes it (`shut`) when dropped.
        let event = tokio::select! {
            event = next_event(events), if events_open => event,
            _ = strong.lost.notified() => continue,
            _ = strong.closing.notified() => return None,
            _ = tokio::time::sleep(CHECK_EVERY) => continue,
        };
        match event {
            None => events_open = false,
            Some(Event::ConnectionBlocked(reason)) => strong.set_blocked(Some(reason)),
            Some(Event::ConnectionUnblocked) => strong.set_blocked(None),
            Some(Event::Error(error)) => {
                if !connection.status().connected() || convert::is_connection_loss(&error) {
                    return Some(convert::error(error).to_string());
                }
                tracing::debug!(%error, "channel error on the connection");
            }
            Some(_) => {}
        }
    }
}
