"""mummi_ml.campaign: views of a whole campaign built on the selector's state directory (above the
selector layer): :func:`write_campaign_report` (``mummi-ml report``)."""

from mummi_ml.campaign.data import Campaign, PickRecord, load_campaign
from mummi_ml.campaign.report import REPORT_NAME, covering_radii, write_campaign_report

__all__ = ["Campaign", "PickRecord", "load_campaign", "write_campaign_report", "covering_radii",
           "REPORT_NAME"]
