//! Secrets from the environment, the one place connectors take them from: a
//! variable holding the secret, or a second one naming a file that holds it (the
//! way container platforms mount secrets). Settings files never hold secrets.

use crate::ConnectorError;

/// The secret in `file_var`'s file (its last line end trimmed) when that variable
/// is set, else in `var`, else `None`. An unreadable file is an error naming the
/// variable and the file, made by `error`.
pub(crate) fn secret(
    var: &str,
    file_var: &str,
    error: impl Fn(String) -> ConnectorError,
) -> Result<Option<String>, ConnectorError> {
    match std::env::var(file_var) {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|p| Some(p.trim_end().to_string()))
            .map_err(|e| error(format!("cannot read {file_var}={path}")).caused_by(e)),
        Err(_) => Ok(std::env::var(var).ok()),
    }
}
