//! systemd's manager over D-Bus: the few calls a runtime needs. Blocking
//! (the shim has no async runtime): each call runs on zbus's executor
//! through `zbus::block_on`, with a deadline.

use std::time::Duration;

use futures_util::{future::Either, StreamExt};
use zbus::{
    zvariant::{OwnedObjectPath, Value},
    Connection, Proxy,
};

use super::properties::{Property, PropertyValue};
use crate::error::{Error, Result};

const DESTINATION: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a start or stop job may take. A scope's jobs finish in
/// milliseconds; this only stops a wedged systemd from hanging a caller.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// systemd's version, read over D-Bus: proof that the driver can work.
pub fn version() -> Result<String> {
    run(|manager| async move { manager.get_property::<String>("Version").await.map_err(|e| dbus_error("read systemd's Version", e)) })
}

/// Starts a transient unit with `properties` and waits for its start job.
/// systemd's own error (an existing unit, a bad property) is returned as
/// it words it.
pub fn start_transient_unit(unit: &str, properties: &[Property]) -> Result<()> {
    let props: Vec<(&str, Value<'_>)> = properties.iter().map(|(name, value)| (*name, to_value(value))).collect();
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    run(|manager| async move {
        // Subscribe before the call, or the job could finish unseen.
        let removed = manager.receive_signal("JobRemoved").await.map_err(|e| dbus_error("subscribe to JobRemoved", e))?;
        let job: OwnedObjectPath = manager.call("StartTransientUnit", &(unit, "replace", props, aux)).await.map_err(|e| refused(unit, e))?;
        wait_for_job(removed, &job, unit).await
    })
}

/// Stops a unit and waits for it to be gone; a unit that does not exist is
/// already stopped. A failed unit's record is reset, so the name can be
/// used again at once.
pub fn stop_unit(unit: &str) -> Result<()> {
    run(|manager| async move {
        let removed = manager.receive_signal("JobRemoved").await.map_err(|e| dbus_error("subscribe to JobRemoved", e))?;
        match manager.call::<_, _, OwnedObjectPath>("StopUnit", &(unit, "replace")).await {
            Ok(job) => wait_for_job(removed, &job, unit).await?,
            Err(e) if is_no_such_unit(&e) => {}
            Err(e) => return Err(refused(unit, e)),
        }
        // Only a failed unit has something to reset; other errors mean nothing.
        let _ = manager.call::<_, _, ()>("ResetFailedUnit", &(unit,)).await;
        Ok(())
    })
}

/// Changes properties of a running unit (at runtime only: nothing is
/// written to /etc).
pub fn set_unit_properties(unit: &str, properties: &[Property]) -> Result<()> {
    if properties.is_empty() {
        return Ok(());
    }
    let props: Vec<(&str, Value<'_>)> = properties.iter().map(|(name, value)| (*name, to_value(value))).collect();
    run(|manager| async move { manager.call::<_, _, ()>("SetUnitProperties", &(unit, true, props)).await.map_err(|e| refused(unit, e)) })
}

/// Connects to the system bus and runs `call` against the manager.
fn run<'a, F, Fut, T>(call: F) -> Result<T>
where
    F: FnOnce(Proxy<'a>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    zbus::block_on(async move {
        let connection = Connection::system().await.map_err(|e| dbus_error("connect to the system bus", e))?;
        let manager = Proxy::new(&connection, DESTINATION, PATH, MANAGER).await.map_err(|e| dbus_error("reach systemd's manager", e))?;
        // The proxy borrows nothing from `connection` (it holds a clone).
        call(manager).await
    })
}

async fn wait_for_job(mut removed: zbus::proxy::SignalStream<'_>, job: &OwnedObjectPath, unit: &str) -> Result<()> {
    let deadline = async_io::Timer::after(JOB_TIMEOUT);
    let outcome = async {
        while let Some(message) = removed.next().await {
            let Ok((_id, path, _unit, result)) = message.body().deserialize::<(u32, OwnedObjectPath, String, String)>() else { continue };
            if &path == job {
                return Some(result);
            }
        }
        None
    };
    futures_util::pin_mut!(outcome);
    match futures_util::future::select(outcome, deadline).await {
        Either::Left((Some(result), _)) if result == "done" => Ok(()),
        Either::Left((Some(result), _)) => {
            Err(Error::Systemd { unit: unit.to_string(), message: format!("job {} ended with result {result:?}", job.as_str()) })
        }
        Either::Left((None, _)) => Err(Error::Systemd { unit: unit.to_string(), message: "the D-Bus connection closed before the job ended".into() }),
        Either::Right(_) => Err(Error::Systemd { unit: unit.to_string(), message: format!("job {} did not end within {JOB_TIMEOUT:?}", job.as_str()) }),
    }
}

fn to_value(value: &PropertyValue) -> Value<'_> {
    match value {
        PropertyValue::Bool(b) => Value::from(*b),
        PropertyValue::U64(n) => Value::from(*n),
        PropertyValue::Str(s) => Value::from(s.as_str()),
        PropertyValue::U32s(v) => Value::from(v.clone()),
        PropertyValue::Bytes(v) => Value::from(v.clone()),
    }
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit")
}

/// systemd answered with an error: keep its words.
fn refused(unit: &str, e: zbus::Error) -> Error {
    let message = match &e {
        zbus::Error::MethodError(name, Some(detail), _) => format!("{detail} ({name})"),
        other => other.to_string(),
    };
    Error::Systemd { unit: unit.to_string(), message }
}

fn dbus_error(what: &'static str, source: zbus::Error) -> Error {
    Error::Dbus { what, source: Box::new(source) }
}
