//! `/admin/jobs`: the jobs dashboard (being written). Reads the queue through
//! `jobs::admin`, never with SQL of its own.

use poem::Route;

pub fn routes(route: Route) -> Route {
    route
}
