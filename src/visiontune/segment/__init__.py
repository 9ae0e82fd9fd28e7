"""segment: semantic, instance and promptable segmentation through the same verbs."""
