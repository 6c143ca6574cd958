# The repository for the one image both ECS services run.

resource "aws_ecr_repository" "app" {
  # checkov:skip=CKV_AWS_136: Images are encrypted with AES-256 (ECR default) by design; no customer-managed KMS key.
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }
}

# Only tagged images are counted: untagged manifests can be the per-platform
# children of a tagged multi-arch image and must live as long as it does.
resource "aws_ecr_lifecycle_policy" "app" {
  repository = aws_ecr_repository.app.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Keep the ${var.ecr_keep_images} most recent tagged images"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
