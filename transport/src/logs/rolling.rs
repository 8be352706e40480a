//! A CSV log file set: `<PREFIX>yyyymmdd-n.log` with Exchange's `#` header
//! lines, a new file per day and beyond the size limit, and deletion of the
//! oldest files beyond the age and directory-size limits.
